/* pybpftrace calls: per function (code object), calls, inclusive and self time, and a log2
 * histogram of latencies, all kept in the kernel; user space reads them at the end (and takes
 * an exited process's as soon as it has exited). A call counts when it begins, so that calls
 * deeper than the shadow stack count too; it is timed when it ends. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#include "common.h"
#include "frame_events.h"

/* Per CPU: each update goes to its own CPU's counts, without atomic operations; user space
 * adds them up. Not preallocated: memory for the functions seen. The kernel gives memory per
 * CPU to a program only from pages it has made ready, and a burst of new functions (a process
 * starting, an import) can use them up before it makes more: a function whose entry cannot be
 * had then (or when the map is full) goes to spilled_functions, preallocated and smaller. */
BPF_F_TABLE("percpu_hash", struct function_key, struct function_stats, functions, FUNCTIONS_MAX, BPF_F_NO_PREALLOC);
BPF_PERCPU_HASH(spilled_functions, struct function_key, struct function_stats, SPILLED_FUNCTIONS_MAX);
BPF_PERCPU_ARRAY(blank_stats, struct function_stats, 1);

static __always_inline int thread_wanted(__u32 tid)
{
	return 1;
}

static __always_inline struct function_stats *stats_of(__u32 pid, struct frames *frames, __u64 code)
{
	struct function_key key = {.code = code, .pid = pid, .incarnation = frames->incarnation};
	struct function_stats *stats = functions.lookup(&key);
	if (!stats)
		stats = spilled_functions.lookup(&key);
	if (stats)
		return stats;
	__u32 zero = 0;
	struct function_stats *blank = blank_stats.lookup(&zero);
	if (!blank)
		return NULL;
	long error = functions.insert(&key, blank);
	if (!error || error == -EEXIST) /* another CPU got there first */
		return functions.lookup(&key);
	if (error == -ENOMEM)
		count(COUNTER_NO_MEMORY);
	spilled_functions.insert(&key, blank);
	stats = spilled_functions.lookup(&key);
	if (!stats)
		count(COUNTER_FUNCTIONS_FULL);
	return stats;
}

static __always_inline void on_push(struct pt_regs *ctx, struct frames *frames, struct frame *frame,
				    struct call *call, __u32 how)
{
	if (how == PUSH_SEEDED) /* it began before tracing: counted as such when it ends */
		return;
	struct function_stats *stats = stats_of(call->pid, frames, call->code);
	if (stats)
		stats->calls += 1;
}

static __always_inline void on_pop(struct pt_regs *ctx, struct frames *frames, struct frame *frame, __u64 elapsed,
				   struct call *call, __u32 how)
{
	if (!frame) /* deeper than the shadow stack: counted, untimed */
		return;
	struct function_stats *stats = stats_of(call->pid, frames, frame->code);
	if (!stats)
		return;
	__u64 self = elapsed - frame->callees;
	if (frame->flags & FRAME_SEEDED) {
		stats->partial += 1;
		stats->partial_total += elapsed;
		stats->partial_self += self;
		return;
	}
	stats->timed += 1;
	stats->total += elapsed;
	stats->self += self;
	if (elapsed > stats->max)
		stats->max = elapsed;
	__u32 bucket = bpf_log2l(elapsed);
	if (bucket < HISTOGRAM_BUCKETS)
		stats->histogram[bucket] += 1;
}

/* A return whose entry never fired: a call, untimed. */
static __always_inline void on_unmatched(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	struct function_stats *stats = stats_of(call->pid, frames, call->code);
	if (stats)
		stats->calls += 1;
}

/* A return below every frame kept (the frames the thread was in could not be read): a call
 * that began before tracing, untimed. */
static __always_inline void on_began_before(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	struct function_stats *stats = stats_of(call->pid, frames, call->code);
	if (stats)
		stats->partial += 1;
}

/* The entry just counted created a generator: not a call. */
static __always_inline void on_created(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	struct function_stats *stats = stats_of(call->pid, frames, call->code);
	if (stats)
		stats->calls -= 1;
}

static __always_inline void on_seeded(struct pt_regs *ctx, struct frames *frames, struct walk *walk)
{
}

/* The calls a thread leaves open when it exits (killed, os._exit, a daemon thread at the
 * interpreter's exit; on the eval-frame route, frames evaluated inline that returned unseen)
 * count with their time up to the exit (the calls still running when tracing ends are, by
 * user space). */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	struct frames *frames = thread_frames.lookup(&tid);
	if (!frames)
		return;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 until = frames->depth > MAX_FRAMES ? frames->deep_since : now; /* when the call above began */
	for (int i = 0; i < MAX_FRAMES; i++) {
		__s32 index = kept_depth(frames) - 1 - i;
		if (index < 0)
			break;
		struct frame *frame = frame_at(frames, index);
		struct function_stats *stats = stats_of(pid, frames, frame->code);
		if (stats) {
			if (frame->flags & FRAME_SEEDED) /* and it began before tracing */
				stats->partial += 1;
			stats->cut += 1;
			stats->cut_total += now - frame->start;
			stats->cut_self += until - frame->start - frame->callees;
		}
		until = frame->start;
	}
	thread_frames.delete(&tid);
}
