/* pybpftrace stack --folded: the call tree with each call path's self time and calls, kept in
 * the kernel; user space reads it at the end (and takes an exited process's part as soon as
 * it has exited). Nothing crosses per event but new code objects. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#include "common.h"
#include "frame_events.h"

enum node_kinds {
	NODE_CALL = 0,
	NODE_DEEPER = 1, /* stands for every call deeper than MAX_FRAMES under the deepest frame kept */
};

/* A node's id mixes its thread's root in: only its own thread writes it (the exit tracepoint
 * runs in the exiting thread too), so it needs no atomic operation, nor a copy per CPU. Not
 * preallocated: memory for the paths seen, not for the most there could be. */
BPF_F_TABLE("hash", __u64, struct call_node, nodes, NODES_MAX, BPF_F_NO_PREALLOC);
/* Calls whose path could not be kept (the nodes map full, or the kernel out of memory):
 * merged by the deepest node kept above them (key), which user space shows a "[paths not
 * kept]" frame under. Preallocated: it must have room when the kernel has no memory. */
BPF_HASH(lost_paths, __u64, struct call_node, LOST_PATHS_MAX);
BPF_F_TABLE("hash", __u64, struct call_root, roots, ROOTS_MAX, BPF_F_NO_PREALLOC);
BPF_ARRAY(roots_made, __u64, 1); /* every root's number: no two share an id */
/* The stacks of threads that exited with calls open, by root (forget_thread). */
BPF_F_TABLE("hash", __u64, struct frames, ended_frames, ENDED_FRAMES_MAX, BPF_F_NO_PREALLOC);
BPF_HASH(tids, __u32, __u8, 4096);
BPF_ARRAY(only_tids, __u32, 1);

static __always_inline int thread_wanted(__u32 tid)
{
	__u32 zero = 0;
	__u32 *only = only_tids.lookup(&zero);
	return !(only && *only) || tids.lookup(&tid);
}

/* A fresh root for a thread. Its id, even when the map is full (counted): the paths under it
 * are then shown under a frame that says so. Numbered, so that no two roots share an id (made
 * of a time, a later process given a dead one's PID and TID took its root's place). */
static __always_inline __u64 new_root(__u32 pid, __u32 tid, __u32 incarnation)
{
	__u32 zero = 0;
	__u64 *made = roots_made.lookup(&zero);
	if (made)
		__sync_fetch_and_add(made, 1); /* its value read after (lifetimes.h): two threads at once may */
	__u64 number = made ? *made : 0;    /* read the same, and their TIDs tell them apart */
	/* the number mixed last: mixed first with the TID, both one more for the next thread,
	 * it would cancel out (xor) and give two threads one id */
	__u64 id = mix(mix(mix(pid, tid), incarnation), number) | 1;
	struct call_root root = {.pid = pid, .tid = tid, .incarnation = incarnation};
	if (roots.update(&id, &root) < 0)
		count(COUNTER_ROOTS_FULL);
	return id;
}

static __always_inline void charge_root(__u64 root, __u64 nanoseconds)
{
	struct call_root *found = roots.lookup(&root);
	if (found)
		__sync_fetch_and_add(&found->self, nanoseconds);
}

/* The node at id, made (under parent) if new; NULL when the map is full. */
static __always_inline struct call_node *node_at(__u64 id, __u64 parent, struct frames *frames, __u32 pid,
						 __u64 code, __u32 kind)
{
	struct call_node *node = nodes.lookup(&id);
	if (node)
		return node;
	struct call_node fresh = {.parent = parent, .code = code, .pid = pid, .incarnation = frames->incarnation,
				  .kind = kind};
	if (nodes.insert(&id, &fresh) == -ENOMEM)
		count(COUNTER_NO_MEMORY);
	return nodes.lookup(&id);
}

/* Add calls and self time to a call path: a node, or (lost) the lost paths under a node. */
static __always_inline void charge(__u64 id, __u8 lost, __u64 calls, __u64 self)
{
	struct call_node *node;
	if (lost)
		node = lost_paths.lookup(&id);
	else
		node = nodes.lookup(&id);
	if (node) {
		node->calls += calls;
		node->self += self;
	}
}

/* A call whose path cannot be kept, under the deepest node kept above it (ancestor). */
static __always_inline void count_lost_path(__u64 ancestor, struct frames *frames, __u32 pid, __u64 calls)
{
	struct call_node *path = lost_paths.lookup(&ancestor);
	if (!path) {
		struct call_node fresh = {.parent = ancestor, .pid = pid, .incarnation = frames->incarnation};
		lost_paths.insert(&ancestor, &fresh);
		path = lost_paths.lookup(&ancestor);
	}
	if (path) {
		path->calls += calls;
		count(COUNTER_NODES_FULL);
	} else {
		count(COUNTER_PATHS_LOST);
	}
}

/* `calls` calls of code under the call path (parent, parent_lost): the node's id, counted;
 * *lost says whether that id is a lost path's instead. */
static __always_inline __u64 count_call(struct frames *frames, __u32 pid, __u64 code, __u64 parent,
					__u8 parent_lost, __u8 *lost, __u64 calls, __u32 kind)
{
	*lost = parent_lost;
	if (!parent_lost) {
		__u64 id = mix(mix(parent, code), kind);
		struct call_node *node = node_at(id, parent, frames, pid, code, kind);
		if (node) {
			node->calls += calls;
			return id;
		}
		*lost = FRAME_PATH_LOST;
	}
	count_lost_path(parent, frames, pid, calls);
	return parent;
}

/* The path of the calls deeper than MAX_FRAMES, under the deepest frame: its id, and whether
 * it is a lost path's (the deepest frame's path is lost, or its node could not be made). */
static __always_inline __u64 deeper_frames(struct frames *frames, __u32 pid, __u8 *lost)
{
	struct frame *deepest = frame_at(frames, MAX_FRAMES - 1);
	return count_call(frames, pid, 0, deepest->node_id, deepest->flags & FRAME_PATH_LOST, lost, 0, NODE_DEEPER);
}

/* The thread's root, made at its first event. */
static __always_inline __u64 root_of(struct frames *frames, struct call *call)
{
	if (!frames->root)
		frames->root = new_root(call->pid, call->tid, frames->incarnation);
	return frames->root;
}

static __always_inline void on_push(struct pt_regs *ctx, struct frames *frames, struct frame *frame,
				    struct call *call, __u32 how)
{
	__s32 depth = frames->depth - 1; /* the call's */
	__u64 calls = how == PUSH_SEEDED ? 0 : 1;
	__u8 lost;
	if (depth >= MAX_FRAMES) { /* counted by its function under the deeper frames' node */
		__u64 deeper = deeper_frames(frames, call->pid, &lost);
		frames->deep_node = deeper;
		count_call(frames, call->pid, call->code, deeper, lost, &lost, calls, NODE_CALL);
		return;
	}
	__u64 parent;
	__u8 parent_lost = 0;
	if (depth > 0) {
		struct frame *caller = frame_at(frames, depth - 1);
		parent = caller->node_id;
		parent_lost = caller->flags & FRAME_PATH_LOST;
	} else {
		parent = root_of(frames, call);
		if (how != PUSH_SEEDED)
			charge_root(parent, call->timestamp - frames->idle);
	}
	__u64 id = count_call(frames, call->pid, call->code, parent, parent_lost, &lost, calls, NODE_CALL);
	if (frame) {
		frame->node_id = id;
		frame->flags |= lost;
	}
}

static __always_inline void on_pop(struct pt_regs *ctx, struct frames *frames, struct frame *frame, __u64 elapsed,
				   struct call *call, __u32 how)
{
	__u8 lost;
	if (frame) {
		charge(frame->node_id, frame->flags & FRAME_PATH_LOST, 0, elapsed - frame->callees);
		return;
	}
	if (elapsed) { /* the last of the calls deeper than MAX_FRAMES: their time together */
		__u64 id = deeper_frames(frames, call->pid, &lost);
		charge(id, lost, 0, elapsed);
	}
}

/* A call of the frame on top whose entry never fired (CPython 3.15 resuming a generator in
 * throw() or close()): counted, untimed. */
static __always_inline void on_unmatched(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	struct frame *caller = frames_top(frames);
	__u8 lost;
	if (caller)
		count_call(frames, call->pid, call->code, caller->node_id, caller->flags & FRAME_PATH_LOST, &lost, 1,
			   NODE_CALL);
}

/* The frame the thread was in when first seen, and could not be read then, returned: name its
 * root and give it a new, unnamed root above. */
static __always_inline void on_began_before(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	__u64 named = root_of(frames, call);
	struct call_root *root = roots.lookup(&named);
	if (!root)
		return;
	__sync_fetch_and_add(&root->self, call->timestamp - frames->idle);
	root->code = call->code;
	__u64 above = new_root(call->pid, call->tid, frames->incarnation);
	root->parent = above;
	frames->root = above;
	frames->idle = call->timestamp;
}

/* The call just entered created a generator: not a call. */
static __always_inline void on_created(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	__u8 lost;
	if (frames->depth <= MAX_FRAMES) {
		struct frame *created = frame_at(frames, frames->depth - 1);
		charge(created->node_id, created->flags & FRAME_PATH_LOST, (__u64)-1, 0);
	} else {
		__u64 deeper = deeper_frames(frames, call->pid, &lost);
		count_call(frames, call->pid, call->code, deeper, lost, &lost, (__u64)-1, NODE_CALL);
	}
}

static __always_inline void on_seeded(struct pt_regs *ctx, struct frames *frames, struct walk *walk)
{
	if (frames->depth == 0)
		frames->idle = trace_start();
}

/* The thread exits, maybe with calls still open (killed, os._exit, a daemon thread at the
 * interpreter's exit): its stack is kept, by its root, for user space to charge them up to
 * the exit (as it does for the threads still running when tracing ends); then it goes. */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	struct frames *frames = thread_frames.lookup(&tid);
	if (!frames)
		return;
	if (frames->depth <= 0) {
		charge_root(frames->root, now - frames->idle);
	} else {
		frames->ended = now;
		if (ended_frames.update(&frames->root, frames) < 0)
			count(COUNTER_ENDED_FULL);
	}
	thread_frames.delete(&tid);
}
