/* pybpftrace calls: per function, calls, inclusive and self time, and a log2 histogram of
 * latencies, all kept in the kernel; user space reads them at the end (and takes an exited
 * process's as soon as it has exited). */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#include "common.h"
#include "frames.h"

/* Per CPU: each return updates its own CPU's counts, without atomic operations; user space
 * adds them up. Not preallocated: memory for the functions seen. The kernel gives memory per
 * CPU to a program only from pages it has made ready, and a burst of new functions (a process
 * starting, an import) can use them up before it makes more: a function whose entry cannot be
 * had then (or when the map is full) goes to spilled_functions, preallocated and smaller. */
BPF_F_TABLE("percpu_hash", struct function_key, struct function_stats, functions, FUNCTIONS_MAX, BPF_F_NO_PREALLOC);
BPF_PERCPU_HASH(spilled_functions, struct function_key, struct function_stats, SPILLED_FUNCTIONS_MAX);
BPF_PERCPU_ARRAY(blank_stats, struct function_stats, 1);

static __always_inline struct function_stats *stats_of(struct pt_regs *ctx, __u32 pid, struct frames *frames,
						      __u64 *args)
{
	struct name_ids ids = function_ids(ctx, args);
	struct function_key key = {.file = ids.file, .function = ids.function, .pid = pid,
				   .incarnation = frames->incarnation};
	struct function_stats *stats = functions.lookup(&key);
	if (!stats)
		stats = spilled_functions.lookup(&key);
	if (stats) {
		if (!stats->named) /* they could not be sent before (counted): again */
			stats->named = intern_names(pid, frames->incarnation, &ids, args) >= 0;
		return stats;
	}
	/* when the names cannot be sent now (counted), they are at the function's next return */
	__u8 named = intern_names(pid, frames->incarnation, &ids, args) >= 0;
	__u32 zero = 0;
	struct function_stats *blank = blank_stats.lookup(&zero);
	if (!blank)
		return NULL;
	blank->named = named;
	long error = functions.insert(&key, blank);
	if (!error || error == -EEXIST) /* another CPU got there first */
		return functions.lookup(&key);
	if (error == -ENOMEM)
		count(COUNTER_NO_MEMORY);
	spilled_functions.insert(&key, blank);
	return spilled_functions.lookup(&key);
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	if (!tracer_enabled() || !process_traced(id >> 32))
		return 0;
	count(COUNTER_EVENTS);
	struct frames *frames = frames_of(id >> 32, (__u32)id, now);
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
	struct frames *frames = frames_of(pid, (__u32)id, now);
	if (!frames)
		return 0;
	struct frame *frame = NULL;
	__u64 elapsed = 0;
	int result = frames_pop(frames, args, now, &frame, &elapsed);
	if (result == SHIM)
		return 0;
	struct function_stats *stats = stats_of(ctx, pid, frames, args);
	if (!stats) {
		count(COUNTER_FUNCTIONS_FULL);
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

/* The calls a thread leaves open when it exits never return: nothing to count. */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	thread_frames.delete(&tid);
}
