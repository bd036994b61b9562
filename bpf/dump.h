/* The dump iterator: every thread's Python stack, read from the tracer's side by a sleepable
 * task iterator (bpf_copy_from_user_task) while the target runs on, never paused. It cannot
 * tail-call, so user space runs it again and again; each run advances the dump by one bounded
 * step of the walker, and sends each thread's stack on `samples` (the includer's ring) when
 * its walk is done. Used by dump, and by profile for the waits still going on at its end. */
#ifndef PYBPFTRACE_DUMP_H
#define PYBPFTRACE_DUMP_H

#include "pystacks.h"

#define INTERPRETERS_MAX 64
#define RETRIES_MAX 4 /* walks of a thread whose stack changed while it was read */

/* The iterator's context (kernel/bpf/task_iter.c): pointers, whatever the kernel's headers. */
struct bpf_iter_meta {
	void *seq;
	__u64 session_id;
	__u64 seq_num;
};
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	void *task;
};

/* The dump in progress; user space sets pid and reads `finished`. */
struct dump {
	__u32 pid;
	__u8 started;
	__u8 finished;
	__u8 walking;                    /* a thread's walk is under way */
	__u8 retries;
	__u64 interpreter;
	__u64 tstate;                    /* the thread state walked, or to walk next; 0: none left */
	__u64 next;                      /* the one after it */
	__u64 first_frame;               /* the walked thread's innermost frame when its walk began */
	__u64 gil;
	__u64 holder;                    /* the GIL's holder when the dump began; 0: nobody */
	__u32 interpreters;
	__u32 tid;
	__u32 lost;                      /* stacks the ring had no room for */
	__u16 loops;                     /* thread lists found to loop (left there) */
	__u8 unreadable;                 /* thread lists left at a state that could not be read */
	__u8 interpreters_cut;           /* more interpreters than INTERPRETERS_MAX (or a loop of them) */
	__u64 mark;                      /* Brent's cycle finding on the list: a state passed, */
	__u32 power;                     /* the steps until the next mark, */
	__u32 since_mark;                /* and the steps since this one */
	struct walk walk;
};

BPF_ARRAY(dumps, struct dump, 1);

/* The GIL of the interpreter being dumped, and its holder now (0 when it is free). */
static __always_inline void read_gil(struct dump *dump, struct py_process *process, void *task)
{
	dump->gil = gil_of(process, dump->interpreter, task);
	dump->holder = gil_holder(dump->gil, task);
}

/* The next interpreter and its first thread state; finished when none is left. */
static __always_inline void next_interpreter(struct dump *dump, struct py_process *process, void *task)
{
	struct py_layout *layout = &process->layout;
	if (!dump->started) {
		dump->started = 1;
		dump->interpreter = read_pointer(process->runtime + layout->runtime_interpreters, task);
	} else {
		dump->interpreter = read_pointer(dump->interpreter + layout->interp_next, task);
	}
	if (dump->interpreter && ++dump->interpreters > INTERPRETERS_MAX)
		dump->interpreters_cut = 1;
	if (!dump->interpreter || dump->interpreters_cut) {
		dump->finished = 1;
		return;
	}
	read_gil(dump, process, task);
	dump->tstate = read_pointer(dump->interpreter + layout->interp_threads, task);
	dump->mark = 0;
	dump->power = 1;
	dump->since_mark = 0;
}

/* Whether dump->tstate was passed before in this list: a list made into a loop (its memory
 * corrupted) is found within twice its length (Brent), each of its threads sent once. */
static __always_inline int list_loops(struct dump *dump)
{
	if (dump->tstate == dump->mark)
		return 1;
	if (dump->since_mark == dump->power) {
		dump->mark = dump->tstate;
		dump->power <<= 1;
		dump->since_mark = 0;
	}
	dump->since_mark++;
	return 0;
}

/* Begin walking the thread state dump->tstate. */
static __always_inline void begin_thread(struct dump *dump, struct py_process *process, struct walk_buffers *buffers,
					 void *task)
{
	struct py_layout *layout = &process->layout;
	if (!dump->retries && list_loops(dump)) { /* a thread walked again is no step along the list */
		dump->loops++;
		dump->tstate = 0; /* on to the next interpreter */
		return;
	}
	if (read_bounded(buffers->tstate, layout->tstate_read, TSTATE_BUF, dump->tstate, task)) {
		dump->unreadable++; /* a pointer that leads nowhere: the rest of the list with it */
		dump->tstate = 0;
		return;
	}
	dump->tid = read_thread_state(layout, buffers, dump->tstate, task);
	dump->next = u64_at(buffers->tstate, layout->tstate_next, TSTATE_BUF);
	walk_start_at(&dump->walk, process, buffers, dump->pid, dump->tid, dump->tstate, task);
	dump->first_frame = dump->walk.cursor;
	dump->walk.sample.timestamp = bpf_ktime_get_ns();
	dump->walk.sample.kind = SAMPLE_DUMP;
	dump->walk.sample.weight = 1;
	dump->walk.sample.address = dump->gil;
	if (dump->holder && dump->holder == dump->tstate)
		dump->walk.sample.flags |= SAMPLE_HOLDS_GIL;
	dump->walking = 1;
}

/* A thread's walk is done: unless its innermost frame changed meanwhile (it ran on, and what
 * was read may mix two moments), send its stack and go on to the next thread. */
static __always_inline void end_thread(struct dump *dump, struct py_process *process, struct walk_buffers *buffers,
					  void *task)
{
	__u8 flags = dump->walk.sample.flags;
	read_thread_state(&process->layout, buffers, dump->tstate, task);
	struct walk *walk = &dump->walk;
	__u64 frame = u64_at(buffers->tstate, process->layout.tstate_frame, TSTATE_BUF);
	if (frame && process->layout.cframe_current_frame != OFFSET_NONE)
		frame = read_pointer(frame + process->layout.cframe_current_frame, task);
	dump->walking = 0;
	if (frame != dump->first_frame) {
		if (++dump->retries < RETRIES_MAX)
			return; /* walk it again */
		flags |= SAMPLE_CHANGED;
	}
	walk->sample.flags = flags;
	__u32 depth = walk->sample.depth;
	if (depth > SAMPLE_FRAMES_MAX)
		depth = SAMPLE_FRAMES_MAX;
	if (samples.ringbuf_output(&walk->sample, offsetof(struct sample_event, frames) + depth * sizeof(struct sample_frame),
				   0))
		dump->lost++;
	dump->retries = 0;
	dump->tstate = dump->next;
}

/* One step of the dump, at the first task of each run. */
int dump_step(struct bpf_iter__task *ctx)
{
	void *task = ctx->task;
	struct bpf_iter_meta *meta = ctx->meta;
	__u32 zero = 0;
	if (!task || meta->seq_num)
		return 0;
	struct dump *dump = dumps.lookup(&zero);
	struct walk_buffers *buffers = walk_buffers.lookup(&zero);
	if (!dump || !buffers || dump->finished)
		return 0;
	__u32 pid = dump->pid;
	struct py_process *process = py_processes.lookup(&pid);
	if (!process) {
		dump->finished = 1;
		return 0;
	}
	if (dump->walking) {
		if (walk_steps(&dump->walk, task))
			end_thread(dump, process, buffers, task);
		return 0;
	}
	if (!dump->tstate) {
		next_interpreter(dump, process, task);
		return 0;
	}
	begin_thread(dump, process, buffers, task);
	return 0;
}

#endif
