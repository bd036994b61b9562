/* Python stacks at the ticks of a sampling clock: each tick, on each CPU, walks the stack of the
 * thread it interrupts when that thread belongs to a traced process, tail-calling the walk on
 * until done, and sends it on `samples`. Included by the programs that sample (profile, top). */
#ifndef PYBPFTRACE_SAMPLER_H
#define PYBPFTRACE_SAMPLER_H

#ifndef TRACKS_FORKS
#error "a program that includes sampler.h defines TRACKS_FORKS before common.h"
#endif

/* The perf event programs' context, declared rather than included: they only hand it on (tail
 * calls), and on x86 uapi/linux/bpf_perf_event.h includes the kernel's own <linux/ptrace.h>,
 * whose headers take clang most of a second at every start. */
struct bpf_perf_event_data;
#include "common.h"
#include "pystacks.h"

#include "samples.h"

BPF_PERCPU_ARRAY(walks, struct walk, 1);
BPF_PROG_ARRAY(walk_programs, 1); /* [0]: walk_on_tick, which tail-calls itself */

/* The calling thread's walk, begun: NULL when the thread is not one whose stacks are read. */
static __always_inline struct walk *begin_walk(__u8 kind, __u64 weight)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, zero = 0;
	if (!tracer_enabled() || !process_traced(pid) || !py_processes.lookup(&pid))
		return NULL;
	struct walk *walk = walks.lookup(&zero);
	if (!walk)
		return NULL;
	walk_start(walk, pid, (__u32)id);
	/* the ids of its code objects are then those its calls give them (frame_events.h), where
	 * a program follows calls; a process given none (sampled only) keeps 0 */
	__u32 *incarnation = incarnations.lookup(&pid);
	walk->incarnation = incarnation ? *incarnation : 0;
	walk->sample.timestamp = bpf_ktime_get_ns();
	walk->sample.kind = kind;
	walk->sample.weight = weight;
	walk->sample.address = 0;
	walk->sample.syscall = -1;
	return walk;
}

#ifdef GIL_ONLY
/* --gil: whether the walked thread holds the GIL (the main interpreter's: a subinterpreter's
 * own GIL is not looked at). Read at the end of the walk, still in the tick that interrupted
 * the thread: it holds now what it held then. */
static __always_inline int holds_gil(struct walk *walk)
{
	__u32 pid = walk->sample.pid;
	struct py_process *process = py_processes.lookup(&pid);
	if (!process || !walk->tstate)
		return 0;
	__u64 interpreter = read_pointer(process->runtime + process->layout.runtime_interpreters, NULL);
	return gil_holder(gil_of(process, interpreter, NULL), NULL) == walk->tstate;
}
#endif

/* A walk goes on in a tail-called program, a bounded number of steps per call. The sample
 * goes out when it is done, or when the tail calls ran out (the tail call returned); with
 * --gil, only a tick's of the thread holding the GIL. */
static __always_inline void walk_ended(struct walk *walk, int done)
{
#ifdef GIL_ONLY
	if (walk->sample.kind == SAMPLE_CPU && !holds_gil(walk)) {
		uncount(COUNTER_EVENTS); /* the samples counted are those kept */
		count(COUNTER_WITHOUT_GIL);
		return;
	}
#endif
	if (!done)
		walk->sample.flags |= SAMPLE_CUT_SHORT;
	send_sample(&walk->sample);
}

/* A walk's continuation takes a bounded number of steps, then tail-calls itself until done
 * (from a program array of its own type: a tail call goes only to a program of its caller's
 * type, and bcc takes no map as a parameter), then sends the sample. Its steps: NULL when no
 * walk is under way. */
static __always_inline struct walk *walk_on(int *done)
{
	__u32 zero = 0;
	struct walk *walk = walks.lookup(&zero);
	*done = walk ? walk_steps(walk, NULL) : 1;
	return walk;
}

/* The clock's periods a tick stands for: 1, unless the program can tell (profile.bpf.c). */
#ifndef TICK_PERIODS
#define TICK_PERIODS() 1
#endif

int on_tick(struct bpf_perf_event_data *ctx)
{
	if (begin_walk(SAMPLE_CPU, TICK_PERIODS())) {
		count(COUNTER_EVENTS);
		walk_programs.call(ctx, 0);
	}
	return 0;
}

int walk_on_tick(struct bpf_perf_event_data *ctx)
{
	int done;
	struct walk *walk = walk_on(&done);
	if (!done)
		walk_programs.call(ctx, 0);
	if (walk)
		walk_ended(walk, done);
	return 0;
}

BPF_RINGBUF_OUTPUT(process_events, 64); /* rings.py PROCESS_PAGES */

static __always_inline struct walk_settings *tracking(void)
{
	__u32 zero = 0;
	struct walk_settings *settings = walk_settings.lookup(&zero);
	return settings && tracer_enabled() ? settings : NULL;
}

static __always_inline struct process_event *process_event(__u32 pid, __u32 parent, __u32 kind)
{
	struct process_event *event = process_events.ringbuf_reserve(sizeof(struct process_event));
	if (!event) {
		count(COUNTER_PROCESS_EVENTS_LOST);
		return NULL;
	}
	event->pid = pid;
	event->parent = parent;
	event->kind = kind;
	event->pad = 0;
	event->program[0] = 0;
	return event;
}

static __always_inline void send_process_event(__u32 pid, __u32 parent, __u32 kind)
{
	struct process_event *event = process_event(pid, parent, kind);
	if (event)
		process_events.ringbuf_submit(event, 0);
}

/* A process that runs another program: its registration, and what is kept of the thread that
 * exec'd, are the old program's. The path it exec'd goes with the event, for user space to name
 * a process that is gone before it looks (the tracepoint's own field: no kernel struct read). */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	forget_exec(id);
	struct walk_settings *settings = tracking();
	if (!settings || !settings->execs || pid == TRACER_PID)
		return 0;
	struct process_event *event = process_event(pid, 0, PROCESS_EXECED);
	if (!event)
		return 0;
	bpf_probe_read_kernel_str(event->program, sizeof(event->program),
				  (char *)args + (args->data_loc_filename & 0xFFFF));
	process_events.ringbuf_submit(event, 0);
	return 0;
}

/* A child of a process whose stacks are read has its parent's memory, layout and all (the
 * tracepoint, common.h's, runs in the parent, which is the current task). Any other child is
 * told of with walk_settings.births. */
static __always_inline void track_fork(__u32 parent, __u32 child)
{
	struct walk_settings *settings = tracking();
	if (!settings)
		return;
	struct py_process *process = settings->forks ? py_processes.lookup(&parent) : NULL;
	if (process) {
		struct py_process copy = *process;
		struct namespace_id *namespace = pid_namespaces.lookup(&parent);
		if (namespace) {
			struct namespace_id same = *namespace;
			pid_namespaces.update(&child, &same);
		}
		if (!py_processes.update(&child, &copy)) {
			send_process_event(child, parent, PROCESS_FORKED);
			return;
		}
		count(COUNTER_PROCESSES_UNREAD);
	}
	if (settings->births)
		send_process_event(child, parent, PROCESS_BORN);
}

#endif
