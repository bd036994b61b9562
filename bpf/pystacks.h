/* Python stacks read out of the interpreter's memory: the one frame walker that every program
 * needing stacks shares. No probe is needed: the kernel follows the interpreter's own pointers,
 * from _PyRuntime to the thread's state and down its frames, with each version's layout
 * (struct py_layout, in a map) telling where the pointers are.
 *
 * A walk is a state machine advanced a bounded number of steps at a time (walk_steps), so that
 * the verifier sees short loops: a program that runs in the target's context (a tick, a
 * tracepoint) tail-calls itself until the walk is done; the dump iterator, which cannot tail
 * call, is run again by user space. Phases: find the thread's state, follow its frames, read
 * their code objects, announce the code objects new to the kernel. With ASYNC_TASKS (--async),
 * each frame a generator or coroutine owns is sent with a tag naming it (generator_tag).
 *
 * The traced process's memory is read in its own context (a tick, a tracepoint: task is NULL)
 * with bpf_probe_read_user, or from ours (the dump iterator, a sleepable program: task is the
 * target's) with bpf_copy_from_user_task. */
#ifndef PYBPFTRACE_PYSTACKS_H
#define PYBPFTRACE_PYSTACKS_H

#include "events.h"
#include "hash.h"

static long (*copy_from_user_task)(void *dst, __u32 size, const void *user_ptr, void *task,
				   __u64 flags) = (void *)BPF_FUNC_copy_from_user_task;

/* With task a constant NULL, the compiler drops the first branch: programs that may not call
 * bpf_copy_from_user_task (they cannot sleep) never do. */
static __always_inline long read_target(void *dst, __u64 size, __u64 address, void *task)
{
	if (task)
		return copy_from_user_task(dst, size, (void *)address, task, 0);
	return bpf_probe_read_user(dst, size, (void *)address);
}

#ifndef PY_PROCESSES_MAX
#define PY_PROCESSES_MAX 8192
#endif
#ifndef THREAD_STATES_MAX
#define THREAD_STATES_MAX 65536
#endif
#ifndef CODES_KNOWN_MAX
#define CODES_KNOWN_MAX 262144
#endif
#ifndef CODES_PAGES
#define CODES_PAGES 1024
#endif
#define THREADS_WALKED_MAX 4096      /* thread states looked at to find a thread's */
#define SKIPPED_FRAMES_MAX 1024      /* shim frames a walk steps over */
#define ANNOUNCED_PER_WALK 32        /* new code objects a walk announces; others at the next */
/* Steps of each phase per call of walk_steps: what keeps the verifier's work bounded. */
/* With these, the longest walk (4096 thread states searched, 1024 frames and as many shims,
 * 32 code objects announced) takes 28 calls, within the kernel's 33 tail calls, and the
 * verifier processes about 400,000 instructions of its million. */
#ifndef THREAD_STEPS
#define THREAD_STEPS 512
#endif
#ifndef FRAME_STEPS
#define FRAME_STEPS 512
#endif
#ifndef CODE_STEPS
#define CODE_STEPS 128
#endif
#ifndef ANNOUNCE_STEPS
#define ANNOUNCE_STEPS 8
#endif

#define TSTATE_BUF 512
#define FRAME_BUF 256
#define CODE_BUF 512
#define STR_HEAD 64

enum walk_phase {
	WALK_THREAD = 0,                 /* looking for the thread's state */
	WALK_FRAMES = 1,                 /* following the frames */
	WALK_CODES = 2,                  /* reading each frame's code object */
	WALK_ANNOUNCE = 3,               /* announcing the code objects new to the kernel */
	WALK_DONE = 4,
};

struct walk_settings {
	__u8 linetables;                 /* announce code objects with their line tables */
	__u8 execs;                      /* tell user space of processes that exec (sampler.h) */
	__u8 forks;                      /* register the children of registered processes */
	__u8 births;                     /* tell user space of every other process forked (sampler.h) */
	__u8 pad[4];
};

/* A walk in progress, and its result in `sample`. */
struct walk {
	__u8 phase;
	__u8 pad[3];
	__u32 steps;                     /* thread states or shim frames looked at */
	__u32 found;                     /* frames found */
	__u32 read;                      /* WALK_CODES: frames whose code object was read */
	__u32 announced;                 /* code objects put aside to announce */
	__u32 announcing;                /* WALK_ANNOUNCE: the next to announce */
	__u64 interpreter;               /* WALK_THREAD: the interpreter whose list is searched */
	__u64 cursor;                    /* WALK_THREAD: the next thread state; then the next frame */
	__u64 last_code;                 /* WALK_CODES: the previous frame's code object and id */
	__u64 last_id;
	__u64 tstate;                    /* the thread state walked, once found */
	__u32 incarnation;               /* its process's, where the starter knows it (lifetimes.h); else 0 */
	__u32 pad2;
	__u64 announce[ANNOUNCED_PER_WALK];
	__u64 announce_id[ANNOUNCED_PER_WALK];
	__u64 addresses[SAMPLE_FRAMES_MAX]; /* each frame's address, beside sample.frames */
#ifdef ASYNC_TASKS
	__u32 tags[SAMPLE_FRAMES_MAX];   /* each frame's generator_tag, beside sample.frames */
#endif
	struct sample_event sample;
};

/* Buffers for what is read of the target. */
struct walk_buffers {
	__u8 tstate[TSTATE_BUF + 8];
	__u8 frame[FRAME_BUF + 8];
	__u8 code[CODE_BUF + 8];
	__u64 name[STR_HEAD / 8];
	__u64 file[STR_HEAD / 8];
};

BPF_HASH(py_processes, __u32, struct py_process, PY_PROCESSES_MAX);
/* The PID namespace of a process in one not the tracer's (namespaces.py): CPython keeps its
 * threads' TIDs there. Its children are in it too (track_fork). */
struct namespace_id {
	__u64 dev;
	__u64 ino;
};
BPF_HASH(pid_namespaces, __u32, struct namespace_id, PY_PROCESSES_MAX);
/* A thread's state, found once by walking the interpreter's list, checked at every use. */
BPF_TABLE("lru_hash", __u32, __u64, thread_states, THREAD_STATES_MAX);

/* A thread that exits: its cached state goes (its TID may come back, another thread's). */
static __always_inline void forget_walked_thread(__u32 tid)
{
	thread_states.delete(&tid);
}

/* A process that exits: its registration goes. */
static __always_inline void forget_walked_process(__u32 pid)
{
	py_processes.delete(&pid);
	pid_namespaces.delete(&pid);
}

/* The TID the thread walked has in its own process (task NULL: it is the calling thread): in
 * another PID namespace its TID there, which is what CPython keeps; else tid. */
static __always_inline __u32 tid_in_process(__u32 pid, __u32 tid, void *task)
{
	struct namespace_id *namespace = pid_namespaces.lookup(&pid);
	if (!namespace || task || (__u32)bpf_get_current_pid_tgid() != tid)
		return tid;
	struct bpf_pidns_info inside = {};
	if (bpf_get_ns_current_pid_tgid(namespace->dev, namespace->ino, &inside, sizeof(inside)))
		return tid;
	return inside.pid;
}

/* The code objects announced on `codes`, by id: forgetting one only announces it again. The
 * value: CODE_KNOWN, and what the program that includes this asks to know of a code object
 * once, from its announcement (CODE_FLAGS(event), defined before including this header). */
#define CODE_KNOWN 1
#ifndef CODE_FLAGS
#define CODE_FLAGS(event) 0
#endif
BPF_TABLE("lru_hash", __u64, __u8, codes_known, CODES_KNOWN_MAX);
BPF_ARRAY(walk_settings, struct walk_settings, 1);
BPF_PERCPU_ARRAY(walk_buffers, struct walk_buffers, 1);
BPF_PERCPU_ARRAY(code_scratch, struct code_event, 1);
BPF_RINGBUF_OUTPUT(codes, CODES_PAGES);

/* Fields of a buffer read from the target, at offsets from the layout: the mask keeps the
 * verifier sure of the bounds (the buffers have 8 spare bytes), the asm keeps the mask. */
static __always_inline __u64 u64_at(const __u8 *buffer, __u32 offset, __u32 size)
{
	asm volatile("" : "+r"(offset));
	offset &= size - 1;
	return *(const __u64 *)(buffer + offset);
}

static __always_inline __u32 u32_at(const __u8 *buffer, __u32 offset, __u32 size)
{
	asm volatile("" : "+r"(offset));
	offset &= size - 1;
	return *(const __u32 *)(buffer + offset);
}

static __always_inline __u8 u8_at(const __u8 *buffer, __u32 offset, __u32 size)
{
	asm volatile("" : "+r"(offset));
	offset &= size - 1;
	return buffer[offset];
}

/* A read of at most `most` bytes; 64-bit throughout, so that the compiler checks and passes
 * the same register (a 32-bit copy loses the bound the verifier needs). */
static __always_inline long read_bounded(void *dst, __u64 size, __u64 most, __u64 address, void *task)
{
	if (size > most)
		size = most;
	asm volatile("" : "+r"(size));
	return read_target(dst, size, address, task);
}

static __always_inline __u64 read_pointer(__u64 address, void *task)
{
	__u64 value = 0;
	if (read_target(&value, sizeof(value), address, task))
		return 0;
	return value;
}


/* The thread state at `tstate`, read into the buffers; its thread's TID: 3.11+ keep the
 * kernel's TID; before, only pthread_self(), glibc's struct pthread, which holds the TID.
 * 0 when unreadable. */
static __always_inline __u32 read_thread_state(struct py_layout *layout, struct walk_buffers *buffers, __u64 tstate,
					       void *task)
{
	if (read_bounded(buffers->tstate, layout->tstate_read, TSTATE_BUF, tstate, task))
		return 0;
	if (layout->tstate_native_thread_id != OFFSET_NONE)
		return u32_at(buffers->tstate, layout->tstate_native_thread_id, TSTATE_BUF);
	__u64 pthread = u64_at(buffers->tstate, layout->tstate_thread_id, TSTATE_BUF);
	__u32 tid = 0;
	if (!pthread || read_target(&tid, sizeof(tid), pthread + layout->pthread_tid, task))
		return 0;
	return tid;
}

/* Where an interpreter's GIL keeps its state: in _PyRuntime up to 3.11, behind a pointer in
 * the interpreter after; 0 where unknown. */
static __always_inline __u64 gil_of(struct py_process *process, __u64 interpreter, void *task)
{
	struct py_layout *layout = &process->layout;
	if (layout->runtime_gil != OFFSET_NONE)
		return process->runtime + layout->runtime_gil;
	if (layout->interp_gil != OFFSET_NONE && interpreter)
		return read_pointer(interpreter + layout->interp_gil, task);
	return 0;
}

/* The thread state holding the GIL at `gil` now; 0 when it is free or cannot be read. */
static __always_inline __u64 gil_holder(__u64 gil, void *task)
{
	__u32 locked = 0;
	if (!gil || read_target(&locked, sizeof(locked), gil + GIL_LOCKED, task) || !locked)
		return 0;
	return read_pointer(gil + GIL_LAST_HOLDER, task);
}

/* Start following the frames of the thread state in the buffers. */
static __always_inline void start_frames(struct walk *walk, struct py_layout *layout, struct walk_buffers *buffers,
					 __u64 tstate, void *task)
{
	__u64 frame = u64_at(buffers->tstate, layout->tstate_frame, TSTATE_BUF);
	if (frame && layout->cframe_current_frame != OFFSET_NONE)
		frame = read_pointer(frame + layout->cframe_current_frame, task);
	walk->sample.thread_id = u64_at(buffers->tstate, layout->tstate_thread_id, TSTATE_BUF);
	walk->tstate = tstate;
	walk->cursor = frame;
	walk->steps = 0;
	walk->found = 0;
	walk->phase = WALK_FRAMES;
}

/* Start a walk of thread tid's stack. */
static __always_inline void walk_start(struct walk *walk, __u32 pid, __u32 tid)
{
	walk->phase = WALK_THREAD;
	walk->steps = 0;
	walk->found = 0;
	walk->read = 0;
	walk->announced = 0;
	walk->announcing = 0;
	walk->interpreter = 0;
	walk->cursor = 0;
	walk->last_code = 0;
	walk->last_id = 0;
	walk->tstate = 0;
	walk->incarnation = 0;
	walk->sample.pid = pid;
	walk->sample.tid = tid;
	walk->sample.thread_id = 0;
	walk->sample.depth = 0;
	walk->sample.flags = 0;
}

/* Start a walk of the stack of a thread state already read into the buffers (dump). */
static __always_inline void walk_start_at(struct walk *walk, struct py_process *process, struct walk_buffers *buffers,
					  __u32 pid, __u32 tid, __u64 tstate, void *task)
{
	walk_start(walk, pid, tid);
	start_frames(walk, &process->layout, buffers, tstate, task);
}

/* Start a walk of the frames of a thread whose state is known (a call's first argument). */
static __always_inline void walk_start_tstate(struct walk *walk, struct py_process *process,
					      struct walk_buffers *buffers, __u32 pid, __u32 tid, __u64 tstate)
{
	walk_start(walk, pid, tid);
	if (read_bounded(buffers->tstate, process->layout.tstate_read, TSTATE_BUF, tstate, NULL)) {
		walk->sample.flags |= SAMPLE_NO_THREAD_STATE;
		walk->phase = WALK_DONE;
		return;
	}
	start_frames(walk, &process->layout, buffers, tstate, NULL);
}

/* WALK_THREAD: the thread's state, from the cache (checked) or the interpreters' lists. */
static __always_inline void find_thread(struct walk *walk, struct py_process *process, struct walk_buffers *buffers,
					void *task)
{
	struct py_layout *layout = &process->layout;
	__u32 tid = walk->sample.tid, own = tid_in_process(walk->sample.pid, tid, task);
	if (!walk->interpreter) {
		__u64 *cached = thread_states.lookup(&tid);
		if (cached && *cached && read_thread_state(layout, buffers, *cached, task) == own) {
			start_frames(walk, layout, buffers, *cached, task);
			return;
		}
		walk->interpreter = read_pointer(process->runtime + layout->runtime_interpreters, task);
		/* A thread running Python code (where every probe fires) holds the GIL: its state is
		 * the holder's, found without a search of a list that may be longer than we walk. */
		__u64 holder = gil_holder(gil_of(process, walk->interpreter, task), task);
		if (holder && read_thread_state(layout, buffers, holder, task) == own) {
			thread_states.update(&tid, &holder);
			start_frames(walk, layout, buffers, holder, task);
			return;
		}
		walk->cursor = walk->interpreter ? read_pointer(walk->interpreter + layout->interp_threads, task) : 0;
	}
	for (int i = 0; i < THREAD_STEPS; i++) {
		if (!walk->cursor) {
			walk->interpreter = walk->interpreter ? read_pointer(walk->interpreter + layout->interp_next, task) : 0;
			if (!walk->interpreter) {
				walk->sample.flags |= SAMPLE_NO_THREAD_STATE;
				walk->phase = WALK_DONE;
				return;
			}
			walk->cursor = read_pointer(walk->interpreter + layout->interp_threads, task);
			continue;
		}
		__u64 tstate = walk->cursor;
		if (read_thread_state(layout, buffers, tstate, task) == own) {
			thread_states.update(&tid, &tstate);
			start_frames(walk, layout, buffers, tstate, task);
			return;
		}
		walk->cursor = u64_at(buffers->tstate, layout->tstate_next, TSTATE_BUF);
		if (++walk->steps >= THREADS_WALKED_MAX) {
			walk->sample.flags |= SAMPLE_NO_THREAD_STATE | SAMPLE_THREADS_UNSEARCHED;
			walk->phase = WALK_DONE;
			return;
		}
	}
}

/* The instruction a frame read into `frame` is at, as a byte offset from its code's first. */
static __always_inline __s64 frame_instruction(struct py_layout *layout, const __u8 *frame, __u64 code)
{
	if (layout->instruction_kind == INSTR_POINTER)
		return u64_at(frame, layout->frame_instruction, FRAME_BUF) - (code + layout->code_instructions);
	if (layout->instruction_kind == INSTR_LASTI_UNITS)
		return (__s64)(__s32)u32_at(frame, layout->frame_instruction, FRAME_BUF) * 2;
	return (__s32)u32_at(frame, layout->frame_instruction, FRAME_BUF);
}

#ifdef ASYNC_TASKS
/* The generator (a coroutine, say) that owns the frame at `address`, read into `frame`: the
 * low half of its address with bit 0 set (objects are aligned, so 0 stays "none"), which user
 * space matches with a task's coroutine (async_stacks.py). */
static __always_inline __u32 generator_tag(struct py_layout *layout, const __u8 *frame, __u64 address, __u8 owner)
{
	__u64 generator = 0;
	if (layout->generator_kind == GENERATOR_EMBEDDED && owner == layout->owner_generator)
		generator = address - layout->frame_generator;
	else if (layout->generator_kind == GENERATOR_POINTER)
		generator = u64_at(frame, layout->frame_generator, FRAME_BUF);
	return generator ? (__u32)generator | 1 : 0;
}
#endif

/* WALK_FRAMES: follow the frames, keeping each Python frame's code object, instruction (as
 * an offset from the code's first) and owner; shims (frames the C stack or the interpreter
 * own) are stepped over. */
static __always_inline void follow_frames(struct walk *walk, struct py_layout *layout, struct walk_buffers *buffers,
					  void *task)
{
	for (int i = 0; i < FRAME_STEPS; i++) {
		__u64 frame = walk->cursor;
		if (!frame) {
			walk->phase = WALK_CODES;
			return;
		}
		if (read_bounded(buffers->frame, layout->frame_read, FRAME_BUF, frame, task)) {
			walk->sample.flags |= SAMPLE_UNREADABLE;
			walk->phase = WALK_CODES;
			return;
		}
		walk->cursor = u64_at(buffers->frame, layout->frame_previous, FRAME_BUF);
		__u64 code = u64_at(buffers->frame, layout->frame_code, FRAME_BUF) & ~layout->code_tag_mask;
		__u8 owner = 0;
		if (layout->frame_owner != OFFSET_NONE)
			owner = u8_at(buffers->frame, layout->frame_owner, FRAME_BUF);
		if (owner >= layout->owner_skipped) {
			if (++walk->steps >= SKIPPED_FRAMES_MAX) {
				walk->sample.flags |= SAMPLE_TRUNCATED;
				walk->phase = WALK_CODES;
				return;
			}
			continue;
		}
		if (walk->found >= SAMPLE_FRAMES_MAX) {
			walk->sample.flags |= SAMPLE_TRUNCATED;
			walk->phase = WALK_CODES;
			return;
		}
		__s64 offset = frame_instruction(layout, buffers->frame, code);
		struct sample_frame *slot = &walk->sample.frames[walk->found & (SAMPLE_FRAMES_MAX - 1)];
		walk->addresses[walk->found & (SAMPLE_FRAMES_MAX - 1)] = frame;
#ifdef ASYNC_TASKS
		walk->tags[walk->found & (SAMPLE_FRAMES_MAX - 1)] = generator_tag(layout, buffers->frame, frame, owner);
#endif
		slot->code = code;
		slot->instruction = offset;
		slot->owner = owner;
		walk->found++;
	}
}

/* A code object's id: the process, its address and what it holds, so that another code
 * object at the same address later gets another id. Its names are read as far as their
 * header and first characters (the name's cached hash, computed for every interned str, the
 * lengths, the first bytes); their reference counts are left out, as they change. The
 * process's incarnation (lifetimes.h; 0 where not known) too: a non-PIE Python's static code
 * objects (3.11's deep-frozen modules) are alike in every process, so a later process given
 * a dead one's PID would take the dead's ids, known and never announced again, whose names
 * go with the dead. */
static __always_inline __u64 code_id(struct py_layout *layout, struct walk_buffers *buffers, __u32 pid,
				     __u32 incarnation, __u64 code, void *task)
{
	__u64 name = u64_at(buffers->code, layout->code_name, CODE_BUF);
	__u64 file = u64_at(buffers->code, layout->code_filename, CODE_BUF);
	__u64 id = mix(mix(mix(mix(pid, incarnation), code), name), file);
	id = mix(id, u32_at(buffers->code, layout->code_firstlineno, CODE_BUF));
	id = mix(id, u64_at(buffers->code, layout->code_linetable, CODE_BUF));
	if (read_target(buffers->name, STR_HEAD, name, task) || read_target(buffers->file, STR_HEAD, file, task))
		return mix(id, 1) | 1; /* an unreadable name: its announcement will say so */
	for (int word = 1; word < STR_HEAD / 8; word++)
		id = mix(mix(id, buffers->name[word]), buffers->file[word]);
	return id | 1; /* never 0, which marks a frame whose code object could not be read */
}

/* WALK_CODES: each frame's code object read and identified; the frames written back in place
 * (never past the one being read), incomplete frames (pushed, their first instruction not yet
 * run) left out. Code objects new to the kernel are put aside to be announced. */
static __always_inline void read_codes(struct walk *walk, struct py_process *process, struct walk_buffers *buffers,
				       void *task)
{
	struct py_layout *layout = &process->layout;
	for (int i = 0; i < CODE_STEPS; i++) {
		if (walk->read >= walk->found || walk->read >= SAMPLE_FRAMES_MAX) {
			walk->phase = WALK_ANNOUNCE;
			return;
		}
		__u32 index = walk->read & (SAMPLE_FRAMES_MAX - 1);
		struct sample_frame *frame = &walk->sample.frames[index];
		walk->read++;
		__u64 code = frame->code, id = walk->last_id;
		__s32 offset = frame->instruction;
		__u32 owner = frame->owner;
		if (code != walk->last_code) {
			id = 0;
			if (!read_bounded(buffers->code, layout->code_read, CODE_BUF, code, task) &&
			    u64_at(buffers->code, 8, CODE_BUF) == process->code_type)
				id = code_id(layout, buffers, walk->sample.pid, walk->incarnation, code, task);
			walk->last_code = code;
			walk->last_id = id;
			if (id && walk->announced < ANNOUNCED_PER_WALK && !codes_known.lookup(&id)) {
				__u32 slot = walk->announced & (ANNOUNCED_PER_WALK - 1);
				walk->announce[slot] = code;
				walk->announce_id[slot] = id;
				walk->announced++;
			}
		}
		if (id && layout->code_firsttraceable != OFFSET_NONE && owner != layout->owner_generator &&
		    offset < (__s32)u32_at(buffers->code, layout->code_firsttraceable, CODE_BUF) * 2)
			continue; /* incomplete */
		__u32 kept = walk->sample.depth & (SAMPLE_FRAMES_MAX - 1);
		struct sample_frame *out = &walk->sample.frames[kept];
		walk->addresses[kept] = walk->addresses[index];
		out->code = id;
		out->instruction = offset < 0 ? 0 : offset;
#ifdef ASYNC_TASKS
		out->owner = walk->tags[index];
#else
		out->owner = 0;
#endif
		walk->sample.depth++;
	}
}

#define STR_LENGTH_MAX 0x7fffffffULL /* characters: a length beyond is garbage (or negative) */

/* A str's text as CPython stores it (compact: 1, 2 or 4 bytes a character), cut to what the
 * event holds, and its length in characters. */
static __always_inline int read_text(struct py_layout *layout, struct walk_buffers *buffers, __u64 str, __u8 *text,
				     __u32 *length, __u8 *kind, void *task)
{
	if (!str || read_target(buffers->name, STR_HEAD, str, task))
		return -1;
	const __u8 *bytes = (const __u8 *)buffers->name;
	__u32 state = u32_at(bytes, layout->str_state, STR_HEAD);
	if (!(state & (1 << 5)))
		return -1; /* not compact: no code object's name is */
	*kind = (state >> 2) & 7;
	__u64 characters = u64_at(bytes, layout->str_length, STR_HEAD);
	if (characters > STR_LENGTH_MAX)
		return -1; /* negative, or beyond any str: not a str's header */
	*length = characters;
	__u64 data = str + ((state & (1 << 6)) ? layout->str_ascii_data : layout->str_compact_data);
	return read_bounded(text, (__u64)*length * *kind, CODE_TEXT_MAX, data, task) ? -1 : 0;
}

/* A code object's names, first line and (when asked) line table, on the `codes` ring: the
 * flags it is now known by (codes_known), or -1 when it could not be announced. incarnation:
 * its process's, where the announcer knows it (0: not known; a sampler's walk, whose program
 * may be sleepable and keep to its own maps: user space gives it its PID's live one). */
static __always_inline int announce_code(struct py_process *process, struct walk_buffers *buffers,
					 struct code_event *event, __u32 pid, __u32 incarnation, __u64 code, __u64 id,
					 void *task)
{
	struct py_layout *layout = &process->layout;
	__u32 zero = 0;
	struct walk_settings *settings = walk_settings.lookup(&zero);
	if (!event || read_bounded(event->linetable, layout->code_read, CODE_BUF, code, task))
		return -1;
	const __u8 *head = event->linetable; /* the code object's head, for a moment */
	__u64 name = u64_at(head, layout->code_name, CODE_BUF);
	__u64 file = u64_at(head, layout->code_filename, CODE_BUF);
	__u64 linetable = u64_at(head, layout->code_linetable, CODE_BUF);
	event->firstlineno = u32_at(head, layout->code_firstlineno, CODE_BUF);
	event->code = id;
	event->address = code;
	event->pid = pid;
	event->incarnation = incarnation;
	event->version = process->version;
	event->flags = 0;
	event->name_length = event->file_length = 0;
	event->name_kind = event->file_kind = 1;
	if (read_text(layout, buffers, name, event->name, &event->name_length, &event->name_kind, task))
		event->flags |= CODE_NAME_UNREADABLE;
	if (read_text(layout, buffers, file, event->file, &event->file_length, &event->file_kind, task))
		event->flags |= CODE_FILE_UNREADABLE;
	event->linetable_size = event->linetable_read = 0;
	if (settings && settings->linetables && linetable) {
		__u64 size = read_pointer(linetable + layout->bytes_size, task);
		/* at most LINETABLE_MAX - 1 bytes, so that the mask below keeps every length */
		__u32 wanted = size >= LINETABLE_MAX ? LINETABLE_MAX - 1 : size;
		event->linetable_size = size;
		if (!read_bounded(event->linetable, wanted, LINETABLE_MAX - 1, linetable + layout->bytes_data, task)) {
			event->linetable_read = wanted;
			event->flags |= CODE_LINETABLE;
		}
	}
	__u64 read = event->linetable_read & (LINETABLE_MAX - 1);
	if (codes.ringbuf_output(event, offsetof(struct code_event, linetable) + read, 0))
		return -1;
	__u8 known = CODE_KNOWN | CODE_FLAGS(event);
	codes_known.update(&id, &known);
	return known;
}

/* WALK_ANNOUNCE: the code objects put aside, announced. */
static __always_inline void announce_codes(struct walk *walk, struct py_process *process,
					   struct walk_buffers *buffers, struct code_event *scratch, void *task)
{
	for (int i = 0; i < ANNOUNCE_STEPS; i++) {
		__u32 next = walk->announcing;
		if (next >= walk->announced || next >= ANNOUNCED_PER_WALK) {
			walk->phase = WALK_DONE;
			return;
		}
		walk->announcing++;
		next &= ANNOUNCED_PER_WALK - 1;
		announce_code(process, buffers, scratch, walk->sample.pid, walk->incarnation, walk->announce[next],
			      walk->announce_id[next], task);
	}
}

/* Advance the walk a bounded number of steps, in these per-CPU buffers (a program that can run
 * inside another that walks, as a sampling clock's tick can inside a probe's, has its own);
 * 1 when it is done (or cannot go on). */
static __always_inline int walk_steps_in(struct walk *walk, struct walk_buffers *buffers, struct code_event *scratch,
					 void *task)
{
	__u32 pid = walk->sample.pid;
	struct py_process *process = py_processes.lookup(&pid);
	if (!process || !buffers || !scratch)
		return 1;
	switch (walk->phase) {
	case WALK_THREAD:
		find_thread(walk, process, buffers, task);
		break;
	case WALK_FRAMES:
		follow_frames(walk, &process->layout, buffers, task);
		break;
	case WALK_CODES:
		read_codes(walk, process, buffers, task);
		break;
	case WALK_ANNOUNCE:
		announce_codes(walk, process, buffers, scratch, task);
		break;
	default:
		return 1;
	}
	return walk->phase == WALK_DONE;
}

static __always_inline int walk_steps(struct walk *walk, void *task)
{
	__u32 zero = 0;
	return walk_steps_in(walk, walk_buffers.lookup(&zero), code_scratch.lookup(&zero), task);
}

#endif
