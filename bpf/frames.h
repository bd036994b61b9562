/* A shadow stack per thread, in a map: the calls running, with when each began and how long
 * its callees took, for the programs that aggregate in the kernel. Frames are keyed by the
 * probe's pointer arguments, never by strings. */
#ifndef PYBPFTRACE_FRAMES_H
#define PYBPFTRACE_FRAMES_H

#include "common.h"

#define MAX_FRAMES 128 /* deeper calls are counted, not timed: their time stays with the caller */
#ifndef MAX_THREADS
#define MAX_THREADS 4096
#endif

struct frame {
	__u64 file;
	__u64 function;
	__u64 start;
	__u64 callees; /* time spent in the calls it made */
	__u64 node_id; /* the program's own use (stack --folded: the call path's id) */
	__s32 line;    /* the line the call reported on entry */
	__u32 pad;
};

struct frames {
	__s32 depth; /* calls running; MAX_FRAMES and more are untimed */
	__u32 pad;
	__u64 root;  /* the program's own use (stack --folded: the thread's root) */
	__u64 idle;  /* since when no call seen entering is running (the thread is in frames
	              * that began before tracing) */
	struct frame stack[MAX_FRAMES];
};

enum pop_result {
	POPPED = 0,       /* the frame returned is *frame */
	BEGAN_BEFORE = 1, /* the call began before tracing */
	UNTIMED = 2,      /* deeper than MAX_FRAMES, or its entry was never seen */
	SHIM = 3,         /* CPython 3.15's shim frame under a specialized __init__: not a call */
};

BPF_TABLE("lru_hash", __u32, struct frames, thread_frames, MAX_THREADS);
BPF_PERCPU_ARRAY(blank_frames, struct frames, 1); /* zeros, too big for the BPF stack */

/* The frame at a depth already checked to be below MAX_FRAMES. The mask keeps the verifier
 * sure of it; the empty asm stops the compiler from dropping the mask as redundant. */
static __always_inline struct frame *frame_at(struct frames *frames, __u32 index)
{
	asm volatile("" : "+r"(index));
	return &frames->stack[index & (MAX_FRAMES - 1)];
}

static __always_inline struct frames *frames_of(__u32 tid, __u64 now)
{
	struct frames *frames = thread_frames.lookup(&tid);
	if (frames)
		return frames;
	__u32 zero = 0;
	struct frames *blank = blank_frames.lookup(&zero);
	if (!blank)
		return NULL;
	blank->idle = now;
	thread_frames.update(&tid, blank);
	return thread_frames.lookup(&tid);
}

/* A call begins: its frame, or NULL when it is too deep to time. */
static __always_inline struct frame *frames_push(struct frames *frames, __u64 *args, __u64 now)
{
	__s32 depth = frames->depth;
	frames->depth = depth + 1;
	if (depth < 0 || depth >= MAX_FRAMES)
		return NULL;
	struct frame *frame = frame_at(frames, depth);
	frame->file = args[0];
	frame->function = args[1];
	frame->start = now;
	frame->callees = 0;
	frame->line = (__s32)args[2];
	frame->node_id = 0;
	return frame;
}

/* A call returns. Its frame is popped when it is the one on top; a return that matches no
 * entry leaves the stack as it is (CPython 3.15 fires those: a generator resumed by throw(),
 * and a specialized __init__ call, entered without function__entry under a shim frame whose
 * return fires too). The elapsed time is charged to the caller's callees. */
static __always_inline int frames_pop(struct frames *frames, __u64 *args, __u64 now,
				      struct frame **popped, __u64 *elapsed)
{
	__s32 depth = frames->depth - 1;
	if (depth < 0) {
		frames->depth = 0;
		return BEGAN_BEFORE;
	}
	if (depth >= MAX_FRAMES) {
		frames->depth = depth;
		return UNTIMED;
	}
	struct frame *frame = frame_at(frames, depth);
	if (frame->file != args[0] || frame->function != args[1])
		return args[0] == args[1] ? SHIM : UNTIMED; /* the shim's file and function: one string */
	frames->depth = depth;
	*popped = frame;
	*elapsed = now - frame->start;
	if (depth > 0)
		frame_at(frames, depth - 1)->callees += *elapsed;
	else
		frames->idle = now;
	return POPPED;
}

/* _Py_MakeCoro (CPython 3.15): the entry just pushed was a generator's creation. */
static __always_inline void frames_retract(struct frames *frames)
{
	if (frames->depth > 0)
		frames->depth -= 1;
}

#endif
