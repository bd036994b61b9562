/* pybpftrace lines: how often each line runs, counted in the kernel (key: file, function,
 * line), or each line as it runs. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"
#include "call_events.h"

BPF_ARRAY(streaming, __u32, 1); /* 1: send every line; 0: count them (common.h's counts) */

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
		return emit_call_event(ctx, EVENT_LINE, pid, (__u32)id, incarnation, NULL, args, 0);
	count(COUNTER_EVENTS);
	struct name_ids ids = function_ids(ctx, args);
	struct count_key key = {.first = ids.file, .second = ids.function, .pid = pid, .line = (__s32)args[2],
				.incarnation = incarnation};
	count_under(&key, 1, args);
	return 0;
}
