/* pybpftrace stack --folded: the call tree with each call path's self time and calls, kept in
 * the kernel; user space reads it at the end (and takes an exited process's part as soon as
 * it has exited). Nothing crosses per event but new names. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#include "common.h"
#include "frames.h"

/* The line of the node under the deepest frame kept that stands for every call deeper than
 * MAX_FRAMES: their calls, and their time together (user space names it). */
#define DEEPER_FRAMES_LINE (-2147483647 - 1)

/* A node's id mixes its thread's root in: only its own thread writes it (the exit tracepoint
 * runs in the exiting thread too), so it needs no atomic operation, nor a copy per CPU. Not
 * preallocated: memory for the paths seen, not for the most there could be. */
BPF_F_TABLE("hash", __u64, struct call_node, nodes, NODES_MAX, BPF_F_NO_PREALLOC);
/* Calls whose path could not be kept (the nodes map full, or the kernel out of memory):
 * merged by the deepest node kept above them (key), which user space shows a "[paths not
 * kept]" frame under. Preallocated: it must have room when the kernel has no memory. */
BPF_HASH(lost_paths, __u64, struct call_node, LOST_PATHS_MAX);
BPF_F_TABLE("hash", __u64, struct call_root, roots, ROOTS_MAX, BPF_F_NO_PREALLOC);
/* The stacks of threads that exited with calls open, by root (forget_thread). */
BPF_F_TABLE("hash", __u64, struct frames, ended_frames, ENDED_FRAMES_MAX, BPF_F_NO_PREALLOC);
BPF_HASH(tids, __u32, __u8, 4096);
BPF_ARRAY(only_tids, __u32, 1);

/* frame.pad: the call's path is not kept; its node_id is then the lost_paths key. */
#define PATH_LOST 1

static __always_inline int traced_thread(__u32 pid, __u32 tid)
{
	__u32 zero = 0;
	__u32 *only = only_tids.lookup(&zero);
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	return !(only && *only) || tids.lookup(&tid);
}

/* A fresh root for a thread: the frames it is in, not yet named. Its id, even when the map
 * is full (counted): the paths under it are then shown under a frame that says so. */
static __always_inline __u64 new_root(__u32 pid, __u32 tid, __u32 incarnation, __u64 now)
{
	__u64 id = mix(mix(now, tid), pid) | 1;
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

/* The node at id, made (under parent, with these names and line) if new; NULL when the map
 * is full. */
static __always_inline struct call_node *node_at(__u64 id, __u64 parent, struct frames *frames, __u32 pid,
						 struct name_ids *ids, __s32 line)
{
	struct call_node *node = nodes.lookup(&id);
	if (node)
		return node;
	struct call_node fresh = {.parent = parent, .file = ids->file, .function = ids->function,
				  .pid = pid, .line = line, .incarnation = frames->incarnation};
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
static __always_inline void count_lost_path(__u64 ancestor, struct frames *frames, __u32 pid)
{
	struct call_node *path = lost_paths.lookup(&ancestor);
	if (!path) {
		struct call_node fresh = {.parent = ancestor, .pid = pid, .incarnation = frames->incarnation};
		lost_paths.insert(&ancestor, &fresh);
		path = lost_paths.lookup(&ancestor);
	}
	if (path) {
		path->calls += 1;
		count(COUNTER_NODES_FULL);
	} else {
		count(COUNTER_PATHS_LOST);
	}
}

/* A call under the call path (parent, parent_lost): its node's id, counted; *lost says
 * whether that id is a lost path's instead. */
static __always_inline __u64 count_call(struct pt_regs *ctx, __u64 *args, struct frames *frames, __u32 pid,
					__u64 parent, __u8 parent_lost, __u8 *lost)
{
	*lost = parent_lost;
	if (!parent_lost) {
		struct name_ids ids = function_ids(ctx, args);
		__u64 id = mix(mix(mix(parent, ids.file), ids.function), args[2]);
		struct call_node *node = nodes.lookup(&id);
		if (!node || !node->named) {
			/* when the names cannot be sent now (counted), the node is kept all the same,
			 * and they are tried again at its next call */
			__u32 named = intern_names(pid, frames->incarnation, &ids, args) >= 0;
			if (!node)
				node = node_at(id, parent, frames, pid, &ids, (__s32)args[2]);
			if (node)
				node->named = named;
		}
		if (node) {
			node->calls += 1;
			return id;
		}
		*lost = PATH_LOST;
	}
	count_lost_path(parent, frames, pid);
	return parent;
}

/* The path of the calls deeper than MAX_FRAMES, under the deepest frame: its id, and whether
 * it is a lost path's (the deepest frame's path is lost, or its node could not be made). */
static __always_inline __u64 deeper_frames(struct frames *frames, __u8 *lost)
{
	struct frame *deepest = frame_at(frames, MAX_FRAMES - 1);
	__u64 id = mix(deepest->node_id, DEEPER_FRAMES_LINE);
	*lost = deepest->pad || !nodes.lookup(&id) ? PATH_LOST : 0;
	return *lost ? deepest->node_id : id;
}

/* A call deeper than MAX_FRAMES. */
static __always_inline void count_deep_call(struct frames *frames, __u32 pid)
{
	struct frame *deepest = frame_at(frames, MAX_FRAMES - 1);
	if (!deepest->pad) {
		__u64 id = mix(deepest->node_id, DEEPER_FRAMES_LINE);
		struct name_ids none = {};
		struct call_node *node = node_at(id, deepest->node_id, frames, pid, &none, DEEPER_FRAMES_LINE);
		if (node) {
			node->calls += 1;
			frames->deep_node = id;
			return;
		}
	}
	count_lost_path(deepest->node_id, frames, pid);
}

/* The calling thread's frames, with a root, if the thread is traced; its ids, and the time. */
static __always_inline struct frames *current_frames(__u32 *pid_out, __u32 *tid_out, __u64 *now_out)
{
	__u64 id = bpf_get_current_pid_tgid(), now = *now_out = bpf_ktime_get_ns();
	__u32 pid = *pid_out = id >> 32, tid = *tid_out = (__u32)id;
	if (!traced_thread(pid, tid))
		return NULL;
	count(COUNTER_EVENTS);
	struct frames *frames = frames_of(pid, tid, now);
	if (frames && !frames->root)
		frames->root = new_root(pid, tid, frames->incarnation, now);
	return frames;
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u32 pid, tid;
	__u64 now;
	struct frames *frames = current_frames(&pid, &tid, &now);
	if (!frames)
		return 0;
	__s32 depth = frames->depth;
	if (depth >= MAX_FRAMES) {
		frames_push(frames, args, now);
		count_deep_call(frames, pid);
		return 0;
	}
	__u64 parent;
	__u8 parent_lost = 0, lost;
	if (depth > 0) {
		struct frame *caller = frame_at(frames, depth - 1);
		parent = caller->node_id;
		parent_lost = caller->pad;
	} else {
		parent = frames->root;
		charge_root(parent, now - frames->idle);
	}
	__u64 id = count_call(ctx, args, frames, pid, parent, parent_lost, &lost);
	struct frame *frame = frames_push(frames, args, now);
	if (frame) {
		frame->node_id = id;
		frame->pad = lost;
	}
	return 0;
}

/* function__return(filename, funcname, lineno) */
static __always_inline int on_function_return(struct pt_regs *ctx, __u64 *args)
{
	__u32 pid, tid;
	__u64 now;
	struct frames *frames = current_frames(&pid, &tid, &now);
	if (!frames)
		return 0;
	struct frame *frame = NULL;
	__u64 elapsed = 0;
	__u8 lost;
	int result = frames_pop(frames, args, now, &frame, &elapsed);
	if (result == POPPED && frame) {
		charge(frame->node_id, frame->pad, 0, elapsed - frame->callees);
		return 0;
	}
	if (result == DEEP) {
		if (elapsed) {
			__u64 id = deeper_frames(frames, &lost);
			charge(id, lost, 0, elapsed);
		}
		return 0;
	}
	if (result == UNMATCHED) {
		/* a call of the open frame whose entry never fired (CPython 3.15 resuming a
		 * generator in throw() or close()): counted, untimed, at its return's line */
		struct frame *caller = frame_at(frames, frames->depth - 1);
		count_call(ctx, args, frames, pid, caller->node_id, caller->pad, &lost);
		return 0;
	}
	if (result != BEGAN_BEFORE)
		return 0;
	/* The frame the thread was in when tracing began returned: name its root and give it
	 * a new, unnamed root above. */
	__u64 named = frames->root;
	struct call_root *root = roots.lookup(&named);
	if (!root)
		return 0;
	struct name_ids ids = function_ids(ctx, args);
	intern_names(pid, frames->incarnation, &ids, args); /* when it fails (counted): named later, or unknown */
	__sync_fetch_and_add(&root->self, now - frames->idle);
	root->file = ids.file;
	root->function = ids.function;
	root->line = (__s32)args[2];
	__u64 above = new_root(pid, tid, frames->incarnation, now + 1);
	root->parent = above;
	frames->root = above;
	frames->idle = now;
	return 0;
}

/* Entry of _Py_MakeCoro (CPython 3.15): the call just entered created a generator. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!traced_thread(id >> 32, tid))
		return 0;
	struct frames *frames = thread_frames.lookup(&tid);
	if (!frames || frames->depth <= 0)
		return 0;
	__u64 taken = 0;
	__u8 lost;
	if (frames->depth <= MAX_FRAMES) {
		struct frame *created = frame_at(frames, frames->depth - 1);
		taken = created->node_id;
		lost = created->pad;
	} else {
		taken = deeper_frames(frames, &lost);
	}
	charge(taken, lost, (__u64)-1, 0);
	frames_retract(frames);
	return 0;
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
