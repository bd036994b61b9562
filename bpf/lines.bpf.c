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
	if (stream && *stream)
		return emit_call_event(EVENT_LINE, pid, (__u32)id, args, 0);
	count(COUNTER_EVENTS);
	struct count_key key = {.first = args[0], .second = args[1], .pid = pid, .line = (__s32)args[2]};
	count_under(&key, 1);
	return 0;
}
