/* pybpftrace gc: every garbage collection, its generation, pause and what it collected. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#ifdef STACKS
#define TRACKS_FORKS /* sampler.h's track_fork (event_stacks.h includes it) */
#endif
#include "common.h"

struct collection {
	__u64 start;
	__s32 generation;
	__u32 pad;
};

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
/* By thread, not preallocated: an entry goes when its collection is done or its thread exits. */
BPF_F_TABLE("hash", __u32, struct collection, running, 65536, BPF_F_NO_PREALLOC);

static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	running.delete(&tid);
}

#include "event_stacks.h"

/* gc__start(int generation) */
static __always_inline int on_gc_start(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!tracer_enabled() || !process_traced(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	struct collection collection = {.start = bpf_ktime_get_ns(), .generation = (__s32)args[0]};
	running.update(&tid, &collection);
	return 0;
}

/* gc__done(Py_ssize_t collected): collected plus uncollectable */
static __always_inline int on_gc_done(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	count(COUNTER_EVENTS);
	struct gc_event *event = reserve_event(sizeof(struct gc_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	struct collection *collection = running.lookup(&tid);
	event->timestamp = now;
	event->duration = collection ? now - collection->start : 0;
	event->generation = collection ? collection->generation : -1;
	event->collected = (__s64)args[0];
	event->pid = pid;
	event->tid = tid;
	event->pad = 0;
	if (collection)
		running.delete(&tid);
	submit_event(ctx, event, now, 1); /* with --stacks, after the stack that caused it */
	return 0;
}
