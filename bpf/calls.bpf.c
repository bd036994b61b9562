/* pybpftrace calls: per function, calls, inclusive and self time, and a log2 histogram of
 * latencies, all kept in the kernel; user space reads them at the end. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"
#include "frames.h"

/* Per CPU: each return updates its own CPU's counts, without atomic operations; user space
 * adds them up. */
BPF_PERCPU_HASH(functions, struct function_key, struct function_stats, 32768);
BPF_PERCPU_ARRAY(blank_stats, struct function_stats, 1);

static __always_inline struct function_stats *stats_of(__u32 pid, __u64 *args)
{
	struct function_key key = {.file = args[0], .function = args[1], .pid = pid};
	struct function_stats *stats = functions.lookup(&key);
	if (stats)
		return stats;
	if (intern_names(pid, args[0], args[1]) < 0)
		return NULL; /* its names could not be sent: try again at its next return */
	__u32 zero = 0;
	struct function_stats *blank = blank_stats.lookup(&zero);
	if (!blank)
		return NULL;
	functions.insert(&key, blank); /* fails harmlessly if another CPU got there first */
	return functions.lookup(&key);
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	if (!tracer_enabled() || !process_traced(id >> 32))
		return 0;
	count(COUNTER_EVENTS);
	struct frames *frames = frames_of((__u32)id, now);
	if (frames)
		frames_push(frames, args, now);
	return 0;
}

/* function__return(filename, funcname, lineno) */
static __always_inline int on_function_return(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 pid = id >> 32;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	count(COUNTER_EVENTS);
	struct frames *frames = frames_of((__u32)id, now);
	if (!frames)
		return 0;
	struct frame *frame = NULL;
	__u64 elapsed = 0;
	int result = frames_pop(frames, args, now, &frame, &elapsed);
	if (result == SHIM)
		return 0;
	struct function_stats *stats = stats_of(pid, args);
	if (!stats) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	stats->calls += 1;
	if (result != POPPED || !frame)
		return 0;
	stats->timed += 1;
	stats->total += elapsed;
	stats->self += elapsed - frame->callees;
	if (elapsed > stats->max)
		stats->max = elapsed;
	if (!stats->line)
		stats->line = frame->line;
	__u32 bucket = bpf_log2l(elapsed);
	if (bucket < HISTOGRAM_BUCKETS)
		stats->histogram[bucket] += 1;
	return 0;
}

/* Entry of _Py_MakeCoro (CPython 3.15): the entry just seen created a generator. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!tracer_enabled() || !process_traced(id >> 32))
		return 0;
	struct frames *frames = thread_frames.lookup(&tid);
	if (frames)
		frames_retract(frames);
	return 0;
}
