/* A shadow stack per thread, in a map: the calls running, outermost first, each with its code
 * object, its interpreter frame, when it began and how long its callees took. Every program
 * that follows calls keeps one (frame_events.h pushes and pops it); frames are matched by the
 * interpreter frame's address (a running frame cannot be freed), never by names. */
#ifndef PYBPFTRACE_FRAMES_H
#define PYBPFTRACE_FRAMES_H

#include "common.h"

#define MAX_FRAMES 128 /* deeper calls are counted, and timed together: see deep_since */
#define INIT_STARTS 8  /* CPython 3.13's specialized __init__ calls pending: see frame_events.h */
#define LINE_UNKNOWN (-2147483647 - 1)

enum frame_flags {
	FRAME_SEEDED = 1,    /* running when its thread was first seen: read from memory, began before tracing */
	FRAME_RECOVERED = 2, /* evaluated inline, found in the frame chain later: its entry time is not known */
	FRAME_PATH_LOST = 4, /* stack --folded: its call path is not kept; node_id is the lost_paths key */
};

struct frame {
	__u64 code;      /* the code object's id (pystacks.h code_id) */
	__u64 code_address;
	__u64 address;   /* the interpreter frame (PyFrameObject up to 3.10) */
	__u64 sp;        /* the C stack pointer at its call (the eval-frame route); 0: evaluated inline,
	                  * or the USDT route */
	__u64 start;
	__u64 callees;   /* time spent in the calls it made */
	__u64 node_id;   /* the program's own use (stack --folded: the call path's id) */
	__s32 line;      /* the line its entry reported (the USDT route); LINE_UNKNOWN */
	__s32 instruction; /* its instruction at entry, a byte offset (the eval-frame route) */
	__u32 flags;     /* enum frame_flags */
	__u32 pad;
};

struct init_start {
	__u64 caller;    /* the frame that made the call */
	__u64 time;
};

struct frames {
	__s32 depth;       /* calls running; those at MAX_FRAMES and deeper have no frame */
	__u32 incarnation; /* of the thread's process */
	__u32 pid;
	__u32 tid;
	__u64 tstate;      /* the thread's PyThreadState; 0 until found */
	__u64 thread_key;  /* what tstate's thread_id (pthread_self()) held when found */
	__u64 root;        /* the program's own use (stack --folded: the thread's root) */
	__u64 idle;        /* since when no call is running (the thread is in C code, or in frames
	                    * that began before tracing and could not be read) */
	__u64 deep_since;  /* since when calls deeper than MAX_FRAMES run: their time, charged as
	                    * the deepest frame's callees when they are all done */
	__u64 ended;       /* when the thread exited (stack --folded keeps the stacks of threads
	                    * that exit with calls open) */
	__u64 deep_node;   /* the program's own use (stack --folded: the node of the calls deeper
	                    * than MAX_FRAMES) */
	__u64 last_code;   /* the code of the last call pushed (CPython 3.15 takes back creations) */
	__u64 creation_sp; /* the eval-frame route: the stack pointer of the last generator's creation
	                    * (a run of its frame that is no call: its return is none either) */
	__s32 function_depth; /* the program's own use (stack: the depth of --function's frame) */
	__u8 seeded;       /* the frames it was in when first seen are on the stack */
	__u8 fresh;        /* no event of this thread sent yet (stack: see struct call_event) */
	__u8 inside;       /* the program's own use (stack: inside --function's frame) */
	__u8 inits;        /* init_starts held */
	__u8 route;        /* how its calls are seen (frame_events.h's enum routes) */
	__u8 pad[7];
	struct init_start init_starts[INIT_STARTS];
	struct frame stack[MAX_FRAMES];
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

/* How many of the calls running have frames (the outermost MAX_FRAMES). */
static __always_inline __s32 kept_depth(struct frames *frames)
{
	return frames->depth > MAX_FRAMES ? MAX_FRAMES : frames->depth;
}

/* The frame on top, or NULL when none is kept (no call running, or deeper than MAX_FRAMES). */
static __always_inline struct frame *frames_top(struct frames *frames)
{
	__s32 depth = frames->depth;
	if (depth <= 0 || depth > MAX_FRAMES)
		return NULL;
	return frame_at(frames, depth - 1);
}

/* The calling thread's stack, made empty (to be seeded) at its first event; NULL (counted)
 * when none can be. */
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
	blank->pid = pid;
	blank->tid = tid;
	blank->fresh = 1;
	if (thread_frames.insert(&tid, blank) < 0 && !thread_frames.lookup(&tid)) {
		count(COUNTER_THREADS_FULL);
		return NULL;
	}
	return thread_frames.lookup(&tid);
}

/* A call begins at depth frames->depth: its frame, or NULL when it is too deep to have one. */
static __always_inline struct frame *frames_push(struct frames *frames, __u64 code, __u64 now)
{
	__s32 depth = frames->depth;
	struct frame *frame = NULL;
	frames->depth = depth + 1;
	frames->last_code = code;
	if (depth >= MAX_FRAMES) {
		if (depth == MAX_FRAMES)
			frames->deep_since = now;
		count(COUNTER_DEEP_CALLS);
	} else if (depth >= 0) {
		frame = frame_at(frames, depth);
		frame->code = code;
		frame->code_address = 0;
		frame->start = now;
		frame->callees = 0;
		frame->node_id = 0;
		frame->address = 0;
		frame->sp = 0;
		frame->line = LINE_UNKNOWN;
		frame->instruction = 0;
		frame->flags = 0;
	}
	/* Callers test the pointer itself, not a flag the compiler derives from depth: Linux 6.1's
	 * verifier follows such a flag down a branch it cannot rule out, and finds NULL used. */
	asm volatile("" : "+r"(frame));
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

/* The call on top ends at now: its frame (NULL for a call deeper than MAX_FRAMES) and how
 * long it took (for the calls too deep to have frames: when it was the last of them, the time
 * they took together; else 0). */
static __always_inline struct frame *frames_pop(struct frames *frames, __u64 now, __u64 *elapsed)
{
	__s32 depth = frames->depth - 1;
	*elapsed = 0;
	if (depth < 0)
		return NULL;
	frames->depth = depth;
	if (depth >= MAX_FRAMES) {
		if (depth == MAX_FRAMES) { /* the last call too deep to have a frame */
			*elapsed = now - frames->deep_since;
			charge_caller(frames, MAX_FRAMES, *elapsed, now);
		}
		return NULL;
	}
	struct frame *frame = frame_at(frames, depth);
	*elapsed = now - frame->start;
	charge_caller(frames, depth, *elapsed, now);
	return frame;
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
