/* pybpftrace lines: how often each line runs, counted in the kernel, or each line as it runs. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"

struct line_key {
	__u64 file;
	__u64 function;
	__u32 pid;
	__s32 line;
};

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
BPF_ARRAY(streaming, __u32, 1); /* 1: send every line; 0: count them in `lines` */
BPF_HASH(lines, struct line_key, __u64, 65536);

/* line(filename, funcname, lineno) */
static __always_inline int on_line(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, zero = 0;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	count(COUNTER_EVENTS);
	__u32 *stream = streaming.lookup(&zero);
	if (stream && *stream) {
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
		event->tid = (__u32)id;
		event->line = (__s32)args[2];
		event->depth = 0;
		event->kind = EVENT_LINE;
		events.ringbuf_submit(event, 0);
		return 0;
	}
	struct line_key key = {.file = args[0], .function = args[1], .pid = pid, .line = (__s32)args[2]};
	__u64 *counted = lines.lookup(&key);
	if (counted) {
		__sync_fetch_and_add(counted, 1);
		return 0;
	}
	if (intern_names(pid, args[0], args[1]) < 0) { /* its names could not be sent: drop it */
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	__u64 one = 1;
	if (lines.insert(&key, &one) < 0) { /* a race inserted it first, or the map is full */
		counted = lines.lookup(&key);
		if (counted)
			__sync_fetch_and_add(counted, 1);
		else
			count(COUNTER_EVENTS_LOST);
	}
	return 0;
}
