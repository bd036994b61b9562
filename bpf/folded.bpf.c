/* pybpftrace stack --folded: the call tree with each call path's self time and calls, kept in
 * the kernel; user space reads it at the end. Nothing crosses per event but new names. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"
#include "frames.h"

#ifndef MAX_NODES
#define MAX_NODES 262144
#endif

/* Per CPU: calls and self time are added on the CPU the event ran on, without atomic
 * operations (two threads would fight over the same nodes); user space adds them up. The
 * CPU that makes a node alone holds its parent and names: the others' copies start at 0. */
BPF_PERCPU_HASH(nodes, __u64, struct call_node, MAX_NODES);
BPF_HASH(roots, __u64, struct call_root, 65536);
BPF_HASH(tids, __u32, __u8, 4096);
BPF_ARRAY(only_tids, __u32, 1);

static __always_inline __u64 mix(__u64 hash, __u64 value)
{
	hash = (hash ^ value) * 0x9E3779B97F4A7C15ULL;
	return hash ^ (hash >> 29);
}

static __always_inline int traced_thread(__u32 pid, __u32 tid)
{
	__u32 zero = 0;
	__u32 *only = only_tids.lookup(&zero);
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	return !(only && *only) || tids.lookup(&tid);
}

/* A fresh root for a thread: the frames it is in, not yet named. */
static __always_inline __u64 new_root(__u32 pid, __u32 tid, __u64 now)
{
	__u64 id = mix(mix(now, tid), pid) | 1;
	struct call_root root = {.pid = pid, .tid = tid};
	roots.update(&id, &root);
	return id;
}

static __always_inline void charge_root(__u64 root, __u64 nanoseconds)
{
	struct call_root *found = roots.lookup(&root);
	if (found)
		__sync_fetch_and_add(&found->self, nanoseconds);
}

/* The calling thread's frames, with a root, if the thread is traced; its ids, and the time. */
static __always_inline struct frames *current_frames(__u32 *pid_out, __u32 *tid_out, __u64 *now_out)
{
	__u64 id = bpf_get_current_pid_tgid(), now = *now_out = bpf_ktime_get_ns();
	__u32 pid = *pid_out = id >> 32, tid = *tid_out = (__u32)id;
	if (!traced_thread(pid, tid))
		return NULL;
	count(COUNTER_EVENTS);
	struct frames *frames = frames_of(tid, now);
	if (frames && !frames->root)
		frames->root = new_root(pid, tid, now);
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
		frames->depth = depth + 1; /* too deep: its time stays with the deepest frame kept */
		return 0;
	}
	__u64 parent;
	if (depth > 0) {
		parent = frame_at(frames, depth - 1)->node_id;
	} else {
		parent = frames->root;
		charge_root(parent, now - frames->idle);
	}
	__u64 node_id = mix(mix(mix(parent, args[0]), args[1]), args[2]);
	struct call_node *node = nodes.lookup(&node_id);
	if (!node && intern_names(pid, args[0], args[1]) >= 0) {
		struct call_node fresh = {.parent = parent, .file = args[0], .function = args[1],
					  .pid = pid, .line = (__s32)args[2]};
		nodes.insert(&node_id, &fresh);
		node = nodes.lookup(&node_id);
	}
	if (node)
		node->calls += 1;
	else /* its names could not be sent, or the map is full: its time goes uncounted */
		count(COUNTER_EVENTS_LOST);
	struct frame *frame = frames_push(frames, args, now);
	if (frame)
		frame->node_id = node ? node_id : 0;
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
	int result = frames_pop(frames, args, now, &frame, &elapsed);
	if (result == POPPED && frame) {
		__u64 node_id = frame->node_id;
		struct call_node *node = nodes.lookup(&node_id);
		if (node)
			node->self += elapsed - frame->callees;
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
	if (intern_names(pid, args[0], args[1]) < 0)
		count(COUNTER_EVENTS_LOST);
	__sync_fetch_and_add(&root->self, now - frames->idle);
	root->file = args[0];
	root->function = args[1];
	root->line = (__s32)args[2];
	__u64 above = new_root(pid, tid, now + 1);
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
	if (frames->depth <= MAX_FRAMES) {
		__u64 node_id = frame_at(frames, frames->depth - 1)->node_id;
		struct call_node *node = nodes.lookup(&node_id);
		if (node)
			node->calls -= 1;
	}
	frames_retract(frames);
	return 0;
}
