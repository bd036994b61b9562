/* pybpftrace top: where the time goes, from Python stacks sampled at a clock (sampler.h); and,
 * where calls can be followed (frame_events.h), how many times each function is entered,
 * counted in the kernel; user space reads the counts each interval. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#define TRACKS_FORKS /* sampler.h's track_fork */
#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

#include "sampler.h"
#include "frame_events.h"

/* Counts (common.h's, key: the code object's id in `first`) go to the generation user space
 * names: it switches generations, then reads and deletes the old one's counts. */
struct top_settings {
	__u32 generation;
	__u32 pad;
};

BPF_ARRAY(top_settings, struct top_settings, 1);

static __always_inline int thread_wanted(__u32 tid)
{
	return 1;
}

/* `amount` calls of the call's code object, in the current generation (a count taken back
 * lands there too: user space sums counts over generations as signed numbers). */
static __always_inline void count_calls(struct frames *frames, struct call *call, __u64 amount)
{
	__u32 zero = 0;
	struct top_settings *settings = top_settings.lookup(&zero);
	if (!settings)
		return;
	struct count_key key = {.first = call->code, .pid = call->pid, .generation = settings->generation,
				.incarnation = frames->incarnation};
	count_under(&key, amount, NULL);
}

static __always_inline void on_push(struct pt_regs *ctx, struct frames *frames, struct frame *frame,
				    struct call *call, __u32 how)
{
	if (how != PUSH_SEEDED)
		count_calls(frames, call, 1);
}

static __always_inline void on_pop(struct pt_regs *ctx, struct frames *frames, struct frame *frame, __u64 elapsed,
				   struct call *call, __u32 how)
{
}

static __always_inline void on_unmatched(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	count_calls(frames, call, 1);
}

static __always_inline void on_began_before(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
}

/* The entry just counted created a generator: not a call. */
static __always_inline void on_created(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	count_calls(frames, call, (__u64)-1);
}

static __always_inline void on_seeded(struct pt_regs *ctx, struct frames *frames, struct walk *walk)
{
}

static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	thread_frames.delete(&tid);
}
