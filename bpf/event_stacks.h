/* Events that carry the Python stack of the thread they fire in (--stacks on gc, imports and
 * audit): the includer's handlers take their event from reserve_event() and hand it to
 * submit_event(); with STACKS, the event waits in a per-CPU slot while the frame walker reads
 * the thread's stack (sampler.h's walk, tail-called on), the stack goes out on `samples` with
 * the event's timestamp, and the event after it on `events`: user space, draining `samples`
 * before `events`, has every event's stack when it reads the event. Without STACKS, events go
 * straight to `events`. The includer defines the `events` ring first. */
#ifndef PYBPFTRACE_EVENT_STACKS_H
#define PYBPFTRACE_EVENT_STACKS_H

#ifdef STACKS
#include "sampler.h"

#define HELD_EVENT_MAX 8192

struct held_event {
	__u32 size;
	__u32 pad;
	__u8 data[HELD_EVENT_MAX];
};

BPF_PERCPU_ARRAY(held_events, struct held_event, 1);
BPF_PROG_ARRAY(walk_uprobe_programs, 1); /* [0]: walk_on_uprobe, which tail-calls itself */

static __always_inline void *reserve_event(__u32 size)
{
	__u32 zero = 0;
	struct held_event *held = held_events.lookup(&zero);
	if (!held || size > HELD_EVENT_MAX)
		return NULL;
	held->size = size;
	return held->data;
}

static __always_inline void send_held_event(void)
{
	__u32 zero = 0;
	struct held_event *held = held_events.lookup(&zero);
	if (!held)
		return;
	__u64 size = held->size;
	if (size > HELD_EVENT_MAX)
		size = HELD_EVENT_MAX;
	/* a pointer, not the array itself: bcc's rewriter (clang 14) crashes on an array argument */
	if (events.ringbuf_output(held->data + 0, size, 0))
		count(COUNTER_EVENTS_LOST);
}

/* The event (from reserve_event) goes out after its thread's stack (when `walk_it`); a process
 * not known to the walker yet (a command just launched) gets a stack record saying so. */
static __always_inline void submit_event(struct pt_regs *ctx, void *event, __u64 timestamp, int walk_it)
{
	if (!walk_it) {
		send_held_event();
		return;
	}
	struct walk *walk = begin_walk(SAMPLE_EVENT, 1);
	if (walk) {
		walk->sample.timestamp = timestamp;
		walk_uprobe_programs.call(ctx, 0);
		walk->sample.flags |= SAMPLE_CUT_SHORT; /* the tail call failed: no frames, said so */
		send_sample(&walk->sample);
	} else {
		__u32 zero = 0;
		__u64 id = bpf_get_current_pid_tgid();
		walk = walks.lookup(&zero);
		if (walk) {
			walk_start(walk, id >> 32, (__u32)id);
			walk->sample.timestamp = timestamp;
			walk->sample.kind = SAMPLE_EVENT;
			walk->sample.flags = SAMPLE_UNREGISTERED;
			send_sample(&walk->sample);
		}
	}
	send_held_event();
}

int walk_on_uprobe(struct pt_regs *ctx)
{
	int done;
	struct walk *walk = walk_on(&done);
	if (!done)
		walk_uprobe_programs.call(ctx, 0);
	if (walk)
		walk_ended(walk, done);
	send_held_event();
	return 0;
}
#else
static __always_inline void *reserve_event(__u32 size)
{
	return events.ringbuf_reserve(size);
}

static __always_inline void submit_event(struct pt_regs *ctx, void *event, __u64 timestamp, int walk_it)
{
	events.ringbuf_submit(event, 0);
}
#endif

#endif
