/* pybpftrace profile: at each tick of a CPU's clock, the Python stack of the thread running
 * there, when it belongs to a traced process; user space counts the stacks. */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include "events.h"
#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

/* Ticks run in the context of the thread they interrupt: its memory is the current one. */
static __always_inline long read_target(void *dst, __u64 size, __u64 address, void *task)
{
	return bpf_probe_read_user(dst, size, (void *)address);
}

#include "pystacks.h"

BPF_RINGBUF_OUTPUT(samples, EVENTS_PAGES); /* the stacks: --buffer-size */
BPF_PERCPU_ARRAY(walks, struct walk, 1);
BPF_PROG_ARRAY(walk_programs, 1); /* [0]: walk_on_tick, which tail-calls itself */

/* Only the frames the walk found are sent. */
static __always_inline void send_sample(struct sample_event *sample)
{
	__u32 depth = sample->depth;
	if (depth > SAMPLE_FRAMES_MAX)
		depth = SAMPLE_FRAMES_MAX;
	if (samples.ringbuf_output(sample, offsetof(struct sample_event, frames) + depth * sizeof(struct sample_frame), 0))
		count(COUNTER_EVENTS_LOST);
}

int on_tick(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, zero = 0;
	if (!tracer_enabled() || !process_traced(pid) || !py_processes.lookup(&pid))
		return 0;
	struct walk *walk = walks.lookup(&zero);
	if (!walk)
		return 0;
	count(COUNTER_EVENTS);
	walk_start(walk, pid, (__u32)id);
	walk->sample.timestamp = bpf_ktime_get_ns();
	walk->sample.kind = SAMPLE_CPU;
	walk->sample.weight = 1;
	walk_programs.call(ctx, 0);
	count(COUNTER_EVENTS_LOST);
	return 0;
}

/* The walk goes on, a bounded number of steps per call, then the sample goes out. */
int walk_on_tick(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	struct walk *walk = walks.lookup(&zero);
	if (!walk)
		return 0;
	if (!walk_steps(walk, NULL)) {
		walk_programs.call(ctx, 0);
		walk->sample.flags |= SAMPLE_CUT_SHORT; /* out of tail calls: what was read goes out */
	}
	send_sample(&walk->sample);
	return 0;
}
