/* Call and line events streamed to user space, their names sent once by id (common.h). */
#ifndef PYBPFTRACE_CALL_EVENTS_H
#define PYBPFTRACE_CALL_EVENTS_H

#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);

/* args: the probe's (filename, funcname, lineno). */
static __always_inline int emit_call_event(__u8 kind, __u32 pid, __u32 tid, __u64 *args, __s32 depth)
{
	count(COUNTER_EVENTS);
	if (intern_names(pid, args[0], args[1]) < 0) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	struct call_event *event = events.ringbuf_reserve(sizeof(struct call_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	event->timestamp = bpf_ktime_get_ns();
	event->file = args[0];
	event->function = args[1];
	event->pid = pid;
	event->tid = tid;
	event->line = (__s32)args[2];
	event->depth = depth;
	event->kind = kind;
	events.ringbuf_submit(event, 0);
	return 0;
}

#endif
