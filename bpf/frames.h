/* A shadow stack per thread, in a map: the calls running, with when each began and how long
 * its callees took, for the programs that aggregate in the kernel. Frames are matched by the
 * probe's pointer arguments (a running call's strings cannot be freed), never by strings. */
#ifndef PYBPFTRACE_FRAMES_H
#define PYBPFTRACE_FRAMES_H

#include "common.h"

#define MAX_FRAMES 128 /* deeper calls are counted, and timed together: see deep_since */

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
	__s32 depth; /* calls running; those at MAX_FRAMES and deeper have no frame */
	__u32 incarnation; /* of the thread's process */
	__u64 root;  /* the program's own use (stack --folded: the thread's root) */
	__u64 idle;  /* since when no call seen entering is running (the thread is in frames
	              * that began before tracing) */
	__u64 deep_since; /* since when calls deeper than MAX_FRAMES run: their time, charged as
	                   * the deepest frame's callees when they are all done */
	__u64 ended;      /* when the thread exited (stack --folded keeps the stacks of threads
	                   * that exit with calls open) */
	__u64 deep_node;  /* the program's own use (stack --folded: the node of the calls deeper
	                   * than MAX_FRAMES) */
	struct frame stack[MAX_FRAMES];
};

enum pop_result {
	POPPED = 0,       /* the frame returned is *frame */
	BEGAN_BEFORE = 1, /* the call began before tracing */
	DEEP = 2,         /* a call deeper than MAX_FRAMES (*elapsed: when it was the last of
	                   * them, the time they took together; else 0) */
	UNMATCHED = 3,    /* its entry was never seen (CPython 3.15 resuming a generator in
	                   * throw() or close()): the open frames stay as they are */
	SHIM = 4,         /* CPython 3.15's shim frame under a specialized __init__: not a call */
};

/* Not preallocated: a thread's stack takes memory only while the thread lives (it goes when
 * the thread exits, lifetimes.h); a thread beyond THREAD_FRAMES_MAX live ones is not traced,
 * and counted (COUNTER_THREADS_FULL). The sizes of maps come from pybpftrace/session.py. */
BPF_F_TABLE("hash", __u32, struct frames, thread_frames, THREAD_FRAMES_MAX, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(blank_frames, struct frames, 1); /* zeros, too big for the BPF stack */

/* The frame at a depth already checked to be below MAX_FRAMES. The mask keeps the verifier
 * sure of it; the empty asm stops the compiler from dropping the mask as redundant. */
static __always_inline struct frame *frame_at(struct frames *frames, __u32 index)
{
	asm volatile("" : "+r"(index));
	return &frames->stack[index & (MAX_FRAMES - 1)];
}

/* The calling thread's stack, made at its first event; NULL (counted) when none can be. */
static __always_inline struct frames *frames_of(__u32 pid, __u32 tid, __u64 now)
{
	struct frames *frames = thread_frames.lookup(&tid);
	if (frames)
		return frames;
	__u32 zero = 0;
	struct frames *blank = blank_frames.lookup(&zero);
	if (!blank)
		return NULL;
	blank->idle = now;
	blank->incarnation = incarnation_of(pid);
	if (thread_frames.insert(&tid, blank) < 0 && !thread_frames.lookup(&tid)) {
		count(COUNTER_THREADS_FULL);
		return NULL;
	}
	return thread_frames.lookup(&tid);
}

/* A call begins: its frame, or NULL when it is too deep to have one. */
static __always_inline struct frame *frames_push(struct frames *frames, __u64 *args, __u64 now)
{
	__s32 depth = frames->depth;
	frames->depth = depth + 1;
	if (depth >= MAX_FRAMES) {
		if (depth == MAX_FRAMES)
			frames->deep_since = now;
		count(COUNTER_DEEP_CALLS);
		return NULL;
	}
	if (depth < 0)
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

/* Time spent by a call that ended (or by all the calls too deep to have frames) goes to the
 * caller's callees, or ends the thread's time in frames known. */
static __always_inline void charge_caller(struct frames *frames, __s32 depth, __u64 elapsed, __u64 now)
{
	if (depth > 0)
		frame_at(frames, depth - 1)->callees += elapsed;
	else
		frames->idle = now;
}

/* A call returns. Its frame is popped when it is the one on top; a return that matches no
 * entry leaves the stack as it is (CPython 3.15 fires those: a generator resumed by throw()
 * or close(), and a specialized __init__ call, entered without function__entry under a shim
 * frame whose return fires too). */
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
		*elapsed = 0;
		if (depth == MAX_FRAMES) { /* the last call too deep to have a frame */
			*elapsed = now - frames->deep_since;
			charge_caller(frames, MAX_FRAMES, *elapsed, now);
		}
		return DEEP;
	}
	struct frame *frame = frame_at(frames, depth);
	if (frame->file != args[0] || frame->function != args[1])
		return args[0] == args[1] ? SHIM : UNMATCHED; /* the shim's file and function: one string */
	frames->depth = depth;
	*popped = frame;
	*elapsed = now - frame->start;
	charge_caller(frames, depth, *elapsed, now);
	return POPPED;
}

/* _Py_MakeCoro (CPython 3.15): the entry just pushed was a generator's creation. */
static __always_inline void frames_retract(struct frames *frames)
{
	if (frames->depth > MAX_FRAMES)
		uncount(COUNTER_DEEP_CALLS);
	if (frames->depth > 0)
		frames->depth -= 1;
}

#endif
