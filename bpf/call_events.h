/* Call and line events streamed to user space, their names sent once by id (common.h). */
#ifndef PYBPFTRACE_CALL_EVENTS_H
#define PYBPFTRACE_CALL_EVENTS_H

#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);

/* args: the probe's (filename, funcname, lineno); fresh: the thread's flag saying its state
 * is new, cleared once an event carries it (NULL: none kept). */
static __always_inline int emit_call_event(struct pt_regs *ctx, __u8 kind, __u32 pid, __u32 tid, __u32 incarnation,
					   __u8 *fresh, __u64 *args, __s32 depth)
{
	count(COUNTER_EVENTS);
	struct name_ids ids = function_ids(ctx, args);
	if (intern_names(pid, incarnation, &ids, args) < 0)
		return 0; /* counted: COUNTER_NAMES_LOST */
	struct call_event *event = events.ringbuf_reserve(sizeof(struct call_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	event->timestamp = bpf_ktime_get_ns();
	event->file = ids.file;
	event->function = ids.function;
	event->pid = pid;
	event->tid = tid;
	event->line = (__s32)args[2];
	event->depth = depth;
	event->kind = kind;
	event->fresh = fresh && *fresh;
	event->incarnation = incarnation;
	events.ringbuf_submit(event, 0);
	if (fresh)
		*fresh = 0;
	return 0;
}

#endif
