/* pybpftrace dump: every thread's Python stack now (dump.h), read while the target runs on. A
 * thread that ran while it was read (its frames pushed and popped meanwhile) is read again in
 * its own context, as profile's ticks read stacks (sampler.h): at one tick of its own CPU
 * clock, aimed at it by user space (pybpftrace/settled.py). */
#include <uapi/linux/bpf.h>
/* The perf event programs' context, declared rather than included: they only hand it on (tail
 * calls), and on x86 uapi/linux/bpf_perf_event.h includes the kernel's own <linux/ptrace.h>,
 * whose headers take clang most of a second at every start. */
struct bpf_perf_event_data;
#include "events.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 256
#endif
#define AIMED_MAX 65536

BPF_RINGBUF_OUTPUT(samples, EVENTS_PAGES);

#include "dump.h"

BPF_HASH(aimed, __u32, __u8, AIMED_MAX); /* the threads whose next tick reads their stack, once */
BPF_PERCPU_ARRAY(walks, struct walk, 1);
BPF_PROG_ARRAY(walk_programs, 1); /* [0]: walk_on_tick, which tail-calls itself */

static __always_inline void send_tick(struct walk *walk)
{
	__u32 depth = walk->sample.depth;
	if (depth > SAMPLE_FRAMES_MAX)
		depth = SAMPLE_FRAMES_MAX;
	samples.ringbuf_output(&walk->sample, offsetof(struct sample_event, frames) + depth * sizeof(struct sample_frame), 0);
	/* a tick whose stack did not fit: user space, which has none, reads the thread again */
}

int on_tick(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id, zero = 0;
	if (aimed.delete(&tid) || !py_processes.lookup(&pid))
		return 0;
	struct walk *walk = walks.lookup(&zero);
	if (!walk)
		return 0;
	walk_start(walk, pid, tid);
	walk->sample.timestamp = bpf_ktime_get_ns();
	walk->sample.kind = SAMPLE_CPU;
	walk->sample.weight = 1;
	walk->sample.address = 0;
	walk->sample.syscall = -1;
	walk_programs.call(ctx, 0);
	return 0;
}

int walk_on_tick(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	struct walk *walk = walks.lookup(&zero);
	if (!walk)
		return 0;
	int done = walk_steps(walk, NULL);
	if (!done)
		walk_programs.call(ctx, 0);
	if (!done)
		walk->sample.flags |= SAMPLE_CUT_SHORT;
	send_tick(walk);
	return 0;
}
