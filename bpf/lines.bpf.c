/* pybpftrace lines: how often each line runs, counted in the kernel (key: file, function,
 * line), or each line as it runs. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
BPF_ARRAY(streaming, __u32, 1); /* 1: send every line; 0: count them (common.h's counts) */

/* args: the probe's (filename, funcname, lineno) */
static __always_inline int emit_line(struct pt_regs *ctx, __u32 pid, __u32 tid, __u32 incarnation, __u64 *args)
{
	count(COUNTER_EVENTS);
	struct name_ids ids = function_ids(ctx, args);
	if (intern_names(pid, incarnation, &ids, args) < 0)
		return 0; /* counted: COUNTER_NAMES_LOST */
	struct line_event *event = events.ringbuf_reserve(sizeof(struct line_event));
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
	event->incarnation = incarnation;
	events.ringbuf_submit(event, 0);
	return 0;
}

/* line(filename, funcname, lineno) */
static __always_inline int on_line(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, zero = 0;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	__u32 *stream = streaming.lookup(&zero);
	__u32 incarnation = incarnation_of(pid);
	if (stream && *stream)
		return emit_line(ctx, pid, (__u32)id, incarnation, args);
	count(COUNTER_EVENTS);
	struct name_ids ids = function_ids(ctx, args);
	struct count_key key = {.first = ids.file, .second = ids.function, .pid = pid, .line = (__s32)args[2],
				.incarnation = incarnation};
	count_under(&key, 1, args);
	return 0;
}
