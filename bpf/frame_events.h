/* Calls and returns, as either route sees them, made into pushes and pops of each thread's
 * shadow stack (frames.h), for the program that includes this to count, time or send:
 *
 * - the USDT route: CPython's function__entry and function__return probes, which fire inside
 *   the frame that enters or returns: the thread's current frame, read from its state;
 * - the eval-frame route: a uprobe and a uretprobe on _PyEval_EvalFrameDefault(tstate, frame,
 *   throwflag), which every call goes through once interp->eval_frame is set (up to 3.10:
 *   always). Its returns are matched to calls by the C stack pointer; a call evaluated inline
 *   (CPython 3.13's specialized __init__, a frame running when tracing began) is noticed in
 *   the frame chain at the next call.
 *
 * Each call is its code object's (pystacks.h's code_id, its names announced on `codes`). At a
 * thread's first event the frames it is already in are read from memory (the frame walker,
 * tail-called) and pushed first, so its stack starts at its real root.
 *
 * The includer defines, before including this: thread_wanted(tid), and what happens at each
 * push and pop: on_push, on_pop, on_unmatched, on_began_before, on_created, on_seeded. */
#ifndef PYBPFTRACE_FRAME_EVENTS_H
#define PYBPFTRACE_FRAME_EVENTS_H

#include "common.h"
#include "pystacks.h"
#include "frames.h"

#ifndef BINARIES_MAX
#define BINARIES_MAX 64
#endif
#define RECOVER_MAX 8 /* frames evaluated inline found in the chain at one call */
#define SHIMS_MAX 4   /* shim frames stepped over to find a thread's innermost Python frame */
/* co_flags of a function whose call creates a generator, coroutine or async generator */
#define CO_GENERATORS (0x20 | 0x80 | 0x200)
/* co_flags of the code of the shim frame under a specialized __init__ (CPython 3.13 and 3.15:
 * owned by the thread, unlike 3.14's, which the interpreter owns) */
#define CO_NO_MONITORING_EVENTS 0x2000000
#define OWNED_BY_THREAD 0

enum routes {
	ROUTE_USDT = 1,
	ROUTE_EVAL_FRAME = 2,
};

enum call_kinds {
	CALL_ENTRY = 1,    /* a frame starts or resumes */
	CALL_RETURN = 2,   /* it returns, yields or unwinds */
	CALL_CREATED = 3,  /* the entry just seen created a generator (CPython 3.15's _Py_MakeCoro) */
	INIT_CALLED = 4,   /* CPython 3.13's CALL_ALLOC_AND_ENTER_INIT starts */
	INIT_RETURNED = 5, /* the __init__ it pushed returned (EXIT_INIT_CHECK) */
};

enum push_kinds {
	PUSH_CALL = 1,      /* an entry seen */
	PUSH_SEEDED = 2,    /* a frame its thread was in when first seen */
	PUSH_RECOVERED = 3, /* a frame evaluated inline, found in the frame chain */
};

enum pop_kinds {
	POP_RETURNED = 1, /* its return seen */
	POP_MISSED = 2,   /* noticed to have returned, later */
};

/* A probe hit, as the handlers below make it, and the per-CPU slot it waits in while its
 * thread's first frames are read. */
struct call {
	__u64 timestamp;
	__u64 tstate;      /* eval-frame: its first argument; else 0 (the thread's, as found) */
	__u64 frame;       /* the interpreter frame entering or returning (eval-frame entry: the
	                    * second argument; else read) */
	__u64 sp;          /* eval-frame: the stack pointer at the call, or after the return */
	__u64 code;        /* the frame's code object's id, once read; 0: unreadable */
	__u64 code_address;
	__u64 state_frame; /* what the thread state's frame field held when its state was checked
	                    * (tstate_current): the innermost frame, or (3.11, 3.12) its cframe;
	                    * 0: read it again */
	__u32 pid;
	__u32 tid;
	__s32 line;        /* the probe's line argument; LINE_UNKNOWN */
	__s32 instruction; /* the frame's instruction, a byte offset */
	__u8 kind;         /* enum call_kinds */
	__u8 route;
	__u8 code_flags;   /* codes_known's flags of the code */
	__u8 skip;         /* seeding: the innermost frames of the walk that are not seeded */
	__u16 seeded;      /* seeding: the frames of the walk pushed so far */
	__u8 then;         /* UNWIND: the program to go on in once the calls above unwind_to are popped */
	__u8 chained;      /* RECOVER: the frames of chain still to push, innermost first */
	__s32 unwind_to;
	__u32 pad2;
	__u64 chain[RECOVER_MAX]; /* RECOVER: frames evaluated inline above the top, innermost first */
};

/* What the includer does (its definitions follow the include). */
static __always_inline int thread_wanted(__u32 tid);
/* A call begins: frame is its slot, NULL when it is deeper than MAX_FRAMES. */
static __always_inline void on_push(struct pt_regs *ctx, struct frames *frames, struct frame *frame,
				    struct call *call, __u32 how);
/* The call on top ends (popped already: frames->depth is its depth); frame is its slot, NULL
 * when it was deeper than MAX_FRAMES; elapsed as frames_pop says. */
static __always_inline void on_pop(struct pt_regs *ctx, struct frames *frames, struct frame *frame, __u64 elapsed,
				   struct call *call, __u32 how);
/* A return whose entry never fired: a call of the frame on top. */
static __always_inline void on_unmatched(struct pt_regs *ctx, struct frames *frames, struct call *call);
/* A return below every frame kept: a call that began before tracing, its frame not read. */
static __always_inline void on_began_before(struct pt_regs *ctx, struct frames *frames, struct call *call);
/* The call on top (call->code) created a generator: no call; it is taken off after this. */
static __always_inline void on_created(struct pt_regs *ctx, struct frames *frames, struct call *call);
/* The thread's frames when first seen are on its stack (the walk holds them). */
static __always_inline void on_seeded(struct pt_regs *ctx, struct frames *frames, struct walk *walk);

/* After the handlers' three probe arguments, the constants of each entry point: the binary's
 * index in binary_layouts, and the link-time address of the place probed (a process's load
 * bias is then the probe's address less it: each process registers itself at its first hit,
 * with no wait for user space, a command just launched included). */
#define BINARY_ARG 3
#define PLACE_ARG 4

/* Each traced binary's layout and link-time addresses (py_process, its runtime and code type
 * not yet moved), by index: filled by user space before tracing. */
BPF_ARRAY(binary_layouts, struct py_process, BINARIES_MAX);
BPF_PERCPU_ARRAY(pending_calls, struct call, 1);
/* The per-CPU state of following calls: apart from the walker's own, which a sampling clock's
 * tick (top) uses, and can while a probe's program runs on the same CPU. */
BPF_PERCPU_ARRAY(call_walks, struct walk, 1);
BPF_PERCPU_ARRAY(call_buffers, struct walk_buffers, 1);
BPF_PERCPU_ARRAY(call_scratch, struct code_event, 1);
#ifndef PYBPFTRACE_SAMPLER_H

/* A process that runs another program: its registration, and what is kept of the thread that
 * exec'd, are the old program's (sampler.h does the same where it is included). */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	forget_exec(bpf_get_current_pid_tgid());
	return 0;
}
#endif
/* The programs a probe hit goes on in (tail calls), each verified on its own: the seeding walk
 * (itself until done, then seed_done), and one program per kind of call and route (handling
 * all of them in one would take the verifier past its million instructions). A USDT entry or
 * return of a thread already seeded is handled in the probe's own program (route_event). */
enum call_programs {
	SEED_START = 0,            /* starts the walk of the thread's frames */
	SEED_WALK = 1,             /* walks them (itself, until done) */
	SEED_DONE = 2,             /* pushes them (SEED_BATCH a time, itself until all are) */
	UNWIND = 3,                /* pops the calls above call->unwind_to (UNWIND_BATCH a time), then
	                            * goes on in call->then */
	HANDLE_USDT_ENTRY = 4,
	HANDLE_USDT_RETURN = 5,
	HANDLE_EVAL_ENTRY = 6,     /* the calls returned below its stack pointer popped, then: */
	HANDLE_EVAL_CALLER = 7,    /* the frame calling matched with the top (RECOVER, UNWIND), and
	                            * the call pushed */
	RECOVER = 8,               /* the frames evaluated inline pushed, and the call */
	HANDLE_EVAL_RETURN = 9,    /* the calls above the one returning popped, then: */
	HANDLE_EVAL_POPPED = 10,   /* the one returning */
	HANDLE_INIT_CALLED = 11,
	HANDLE_INIT_RETURNED = 12,
	CALL_PROGRAMS = 13,
};
#define SEED_BATCH 16
#define UNWIND_BATCH 16
#define RECOVER_BATCH 2
BPF_PROG_ARRAY(call_programs, CALL_PROGRAMS);

/* Go on in program `next`. A tail call returns only when it failed (the chain's 33 are spent:
 * a long search, walk or unwind before), and then the event is dropped: counted. */
static __always_inline void go_on(struct pt_regs *ctx, __u32 next)
{
	call_programs.call(ctx, next);
	count(COUNTER_CHAIN_SPENT);
}

/* Launched commands whose eval_frame hook is to be set at their first call (routes.py): the
 * kernel stops each there (SIGSTOP), user space sets the hook and lets it go on. */
BPF_HASH(hooks_pending, __u32, __u8, 64);
#define SIGSTOP 19

struct trace_settings {
	__u64 start; /* when tracing began (bpf_ktime_get_ns): frames running then began before */
};
BPF_ARRAY(trace_settings, struct trace_settings, 1);

static __always_inline __u64 trace_start(void)
{
	__u32 zero = 0;
	struct trace_settings *settings = trace_settings.lookup(&zero);
	return settings ? settings->start : 0;
}

/* The process's registration (pystacks.h's py_processes), made at its first hit of a place
 * whose link-time address the entry point knows (at_place): not at a uretprobe, whose address
 * is the caller's. Where the map has no room, the event is counted and dropped (a later hit
 * tries again). */
static __always_inline struct py_process *process_of(struct pt_regs *ctx, __u32 pid, __u64 *args, int at_place)
{
	struct py_process *process = py_processes.lookup(&pid);
	if (process || !at_place)
		return process;
	__u32 index = args[BINARY_ARG];
	struct py_process *linked = binary_layouts.lookup(&index);
	if (!linked || !linked->runtime)
		return NULL;
	struct py_process moved = *linked;
	__u64 bias = PT_REGS_IP(ctx) - args[PLACE_ARG];
	moved.runtime += bias;
	moved.code_type += bias;
	if (py_processes.update(&pid, &moved)) {
		count(COUNTER_UNREGISTERED_EVENTS);
		return NULL;
	}
	return py_processes.lookup(&pid);
}

/* A thread's current (innermost) frame, as its state says: state_frame, its frame field when
 * already read (else 0: read here). */
static __always_inline __u64 state_current_frame(struct py_layout *layout, __u64 tstate, __u64 state_frame)
{
	__u64 frame = state_frame ? state_frame : read_pointer(tstate + layout->tstate_frame, NULL);
	if (frame && layout->cframe_current_frame != OFFSET_NONE)
		frame = read_pointer(frame + layout->cframe_current_frame, NULL);
	return frame;
}

static __always_inline __u64 current_frame(struct py_layout *layout, __u64 tstate)
{
	return state_current_frame(layout, tstate, 0);
}

struct frame_info {
	__u64 code;      /* the code object's address */
	__u64 previous;
	__s64 instruction;
	__u8 owner;
};

static __always_inline int read_frame_info(struct py_layout *layout, struct walk_buffers *buffers, __u64 frame,
					   struct frame_info *info)
{
	if (!frame || read_bounded(buffers->frame, layout->frame_read, FRAME_BUF, frame, NULL))
		return -1;
	info->previous = u64_at(buffers->frame, layout->frame_previous, FRAME_BUF);
	info->code = u64_at(buffers->frame, layout->frame_code, FRAME_BUF) & ~layout->code_tag_mask;
	info->owner = layout->frame_owner != OFFSET_NONE ? u8_at(buffers->frame, layout->frame_owner, FRAME_BUF) : 0;
	info->instruction = frame_instruction(layout, buffers->frame, info->code);
	return 0;
}

/* The innermost frame at or below frame that is Python's (a shim, owned by the C stack or the
 * interpreter, stepped over): 0 where none. */
static __always_inline __u64 python_frame(struct py_layout *layout, struct walk_buffers *buffers, __u64 frame,
					  struct frame_info *info)
{
	for (int i = 0; i < SHIMS_MAX; i++) {
		if (read_frame_info(layout, buffers, frame, info))
			return 0;
		if (info->owner < layout->owner_skipped)
			return frame;
		frame = info->previous;
	}
	return 0;
}

/* The id of the code object at code (0: unreadable, or no code object), and its flags
 * (codes_known's; 0 where it could not be announced: then it is tried again next time);
 * its co_flags too. Read at every event, strings and all: a code object freed and another
 * made at its address, with names at the same addresses too, gets another id, never the
 * first one's name. incarnation: the process's, as its thread's frames hold it (the id mixes
 * it in, as the walks that seed them do). */
static __always_inline __u64 event_code(struct py_process *process, struct walk_buffers *buffers, __u32 pid,
					__u32 incarnation, __u64 code, __u8 *flags, __u32 *co_flags)
{
	struct py_layout *layout = &process->layout;
	*flags = 0;
	*co_flags = 0;
	if (!code || read_bounded(buffers->code, layout->code_read, CODE_BUF, code, NULL) ||
	    u64_at(buffers->code, 8, CODE_BUF) != process->code_type)
		return 0;
	if (layout->code_flags != OFFSET_NONE)
		*co_flags = u32_at(buffers->code, layout->code_flags, CODE_BUF);
	__u64 id = code_id(layout, buffers, pid, incarnation, code, NULL);
	__u8 *announced = codes_known.lookup(&id);
	if (announced) {
		*flags = *announced;
		return id;
	}
	__u32 zero = 0;
	struct code_event *scratch = call_scratch.lookup(&zero);
	int got = scratch ? announce_code(process, buffers, scratch, pid, incarnation, code, id, NULL) : -1;
	if (got < 0) {
		count(COUNTER_CODES_LOST);
		return id;
	}
	*flags = got;
	return id;
}

/* The frame at address: its code object's id (call->code), its instruction, owner and co_flags. */
static __always_inline int read_call_frame(struct py_process *process, struct walk_buffers *buffers,
					   struct frames *frames, struct call *call, __u64 frame, struct frame_info *info,
					   __u32 *co_flags)
{
	if (read_frame_info(&process->layout, buffers, frame, info))
		return -1;
	call->frame = frame;
	call->instruction = info->instruction;
	call->code_address = info->code;
	call->code = event_code(process, buffers, call->pid, frames->incarnation, info->code, &call->code_flags, co_flags);
	return 0;
}

/* Whether the thread's state found before is still its own (a thread state freed and another
 * made for the thread is found again). Its frame field is read in the same read, for the
 * handler (call->state_frame): one read of user memory instead of two, at every event. */
static __always_inline int tstate_current(struct py_layout *layout, struct walk_buffers *buffers,
					  struct frames *frames, struct call *call)
{
	if (!frames->tstate)
		return 0;
	if (!buffers) /* never: a per-CPU array's one slot */
		return read_pointer(frames->tstate + layout->tstate_thread_id, NULL) == frames->thread_key;
	if (read_bounded(buffers->tstate, layout->tstate_read, TSTATE_BUF, frames->tstate, NULL))
		return frames->thread_key == 0; /* as an unreadable thread id reads: 0 */
	if (u64_at(buffers->tstate, layout->tstate_thread_id, TSTATE_BUF) != frames->thread_key)
		return 0;
	call->state_frame = u64_at(buffers->tstate, layout->tstate_frame, TSTATE_BUF);
	return 1;
}

static __always_inline void push_call(struct pt_regs *ctx, struct frames *frames, struct call *call, __u64 address,
				      __u64 sp, __u64 start, __u32 how)
{
	struct frame *frame = frames_push(frames, call->code, start);
	if (frame) {
		frame->address = address;
		frame->code_address = call->code_address;
		frame->sp = sp;
		frame->line = call->line;
		frame->instruction = call->instruction;
		frame->flags = how == PUSH_SEEDED ? FRAME_SEEDED : how == PUSH_RECOVERED ? FRAME_RECOVERED : 0;
	}
	if (how == PUSH_RECOVERED)
		count(COUNTER_RECOVERED_CALLS);
	on_push(ctx, frames, frame, call, how);
}

/* The call on top ended at the call's time (how: returned, or noticed to have). */
static __always_inline void pop_call(struct pt_regs *ctx, struct frames *frames, struct call *call, __u32 how)
{
	__u64 elapsed;
	struct frame *frame = frames_pop(frames, call->timestamp, &elapsed);
	if (how == POP_MISSED)
		count(COUNTER_MISSED_RETURNS);
	on_pop(ctx, frames, frame, elapsed, call, how);
}

/* The frames the thread was in at its first event, read by the walk just done, pushed: those
 * of its calls that began before tracing, which began when it did. At a USDT entry the frame
 * entering is already the innermost: it is left for the entry to push. First: */
static __always_inline void seed_begin(struct py_process *process, struct frames *frames, struct walk *walk,
				       struct call *call)
{
	struct py_layout *layout = &process->layout;
	__u64 tstate = call->tstate;
	if (!tstate) {
		__u64 *found = thread_states.lookup(&call->tid);
		tstate = found ? *found : 0;
	}
	frames->tstate = tstate;
	frames->thread_key = tstate ? read_pointer(tstate + layout->tstate_thread_id, NULL) : 0;
	call->skip = 0;
	call->seeded = 0;
	if (call->route == ROUTE_USDT && call->kind == CALL_ENTRY && walk->sample.depth && tstate &&
	    walk->addresses[0] == current_frame(layout, tstate))
		call->skip = 1;
	walk->sample.weight = call->skip;
}

/* ... then SEED_BATCH frames at a time, outermost first; 1 when all are pushed. */
static __always_inline int seed_batch(struct pt_regs *ctx, struct frames *frames, struct walk *walk,
				      struct call *call)
{
	__u32 found = walk->sample.depth;
	if (found > SAMPLE_FRAMES_MAX)
		found = SAMPLE_FRAMES_MAX;
	__u32 wanted = found > call->skip ? found - call->skip : 0;
	__u64 start = trace_start();
	struct call seeded = {.timestamp = call->timestamp, .pid = call->pid, .tid = call->tid, .line = LINE_UNKNOWN};
	for (int i = 0; i < SEED_BATCH; i++) {
		__u32 index = call->seeded;
		if (index >= wanted || index >= MAX_FRAMES)
			break;
		__u32 j = (found - 1 - index) & (SAMPLE_FRAMES_MAX - 1);
		seeded.code = walk->sample.frames[j].code;
		seeded.code_address = 0; /* read again from the frame where needed */
		seeded.instruction = walk->sample.frames[j].instruction;
		__u8 *flags = seeded.code ? codes_known.lookup(&seeded.code) : NULL;
		seeded.code_flags = flags ? *flags : 0;
		push_call(ctx, frames, &seeded, walk->addresses[j], 0, start, PUSH_SEEDED);
		call->seeded = index + 1;
	}
	if (call->seeded < wanted && call->seeded < MAX_FRAMES)
		return 0;
	if (wanted > MAX_FRAMES) { /* the innermost, too deep to have frames */
		frames->depth = wanted;
		frames->deep_since = start;
	}
	if (walk->sample.flags & (SAMPLE_TRUNCATED | SAMPLE_UNREADABLE | SAMPLE_CUT_SHORT | SAMPLE_NO_THREAD_STATE))
		count(COUNTER_SEEDS_PARTIAL);
	frames->seeded = 1;
	on_seeded(ctx, frames, walk);
	return 1;
}

/* A USDT entry: the frame entering (the current frame) is pushed; a shim's (CPython 3.15's
 * under a specialized __init__) is no call. */
static __always_inline void handle_usdt_entry(struct pt_regs *ctx, struct py_process *process,
					      struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct frame_info info = {};
	__u32 co_flags = 0;
	__u64 innermost = state_current_frame(&process->layout, frames->tstate, call->state_frame);
	if (read_call_frame(process, buffers, frames, call, innermost, &info, &co_flags))
		return;
	if (info.owner >= process->layout.owner_skipped || (co_flags & CO_NO_MONITORING_EVENTS))
		return;
	push_call(ctx, frames, call, call->frame, 0, call->timestamp, PUSH_CALL);
}

/* A USDT return: it pops the frame on top when that is the frame returning; a shim's (CPython
 * 3.15's under a specialized __init__) is none of the program's; a
 * return with no entry seen is a call of the frame below (3.15 resuming a generator in throw()). */
static __always_inline void handle_usdt_return(struct pt_regs *ctx, struct py_process *process,
					       struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct py_layout *layout = &process->layout;
	struct frame_info info = {};
	__u32 co_flags = 0;
	__u64 innermost = state_current_frame(layout, frames->tstate, call->state_frame);
	if (read_frame_info(layout, buffers, innermost, &info))
		return;
	call->frame = innermost;
	call->instruction = info.instruction;
	call->code_address = info.code;
	struct frame *top = frames_top(frames);
	asm volatile("" : "+r"(top)); /* tested itself below, not as depth: see frames_push */
	if (top && top->address == innermost && info.code && top->code_address == info.code &&
	    info.owner < layout->owner_skipped) {
		/* The call on top returns, with the code object its entry read, identified and found
		 * no shim's: a running frame holds its code object, so it is that one still (the
		 * commonest event, and three reads of memory fewer). Its pop takes the frame's code. */
		call->code = top->code;
		pop_call(ctx, frames, call, POP_RETURNED);
		return;
	}
	call->code = event_code(process, buffers, call->pid, frames->incarnation, info.code, &call->code_flags,
				&co_flags);
	if (info.owner >= layout->owner_skipped || (co_flags & CO_NO_MONITORING_EVENTS))
		return;
	if (frames->depth <= 0) {
		on_began_before(ctx, frames, call);
		return;
	}
	if (top && top->address != call->frame) {
		on_unmatched(ctx, frames, call);
		return;
	}
	pop_call(ctx, frames, call, POP_RETURNED);
}

/* CPython 3.13's CALL_ALLOC_AND_ENTER_INIT: an __init__ may be pushed and evaluated inline
 * (the instruction checks no eval_frame): when it began, by the frame calling, in a ring of
 * the last INIT_STARTS (one that deoptimized pushes none, and is overwritten in time). */
static __always_inline void handle_init_called(struct py_process *process, struct frames *frames, struct call *call)
{
	__u32 next = frames->inits;
	struct init_start *slot = &frames->init_starts[next & (INIT_STARTS - 1)];
	slot->caller = current_frame(&process->layout, frames->tstate);
	slot->time = call->timestamp;
	frames->inits = (next + 1) & (INIT_STARTS - 1);
}

/* When the latest call that the frame `caller` made of an __init__ began (0: not known). */
static __always_inline __u64 init_started(struct frames *frames, __u64 caller)
{
	if (!caller)
		return 0;
	for (int i = 1; i <= INIT_STARTS; i++) {
		struct init_start *slot = &frames->init_starts[(frames->inits - i) & (INIT_STARTS - 1)];
		if (slot->caller == caller) {
			slot->caller = 0;
			return slot->time;
		}
	}
	return 0;
}

/* Pop the calls above call->unwind_to (UNWIND_BATCH of them); 1 when none is left. */
static __always_inline int unwind(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	for (int i = 0; i < UNWIND_BATCH; i++) {
		if (frames->depth <= call->unwind_to)
			return 1;
		pop_call(ctx, frames, call, POP_MISSED);
	}
	return frames->depth <= call->unwind_to;
}

/* Go on in `then` once the calls above depth are popped (returned unseen). */
static __always_inline void unwind_then(struct pt_regs *ctx, struct frames *frames, struct call *call, __s32 depth,
					__u32 then)
{
	if (frames->depth > depth) {
		call->unwind_to = depth;
		call->then = then;
		go_on(ctx, UNWIND);
		return;
	}
	go_on(ctx, then);
}

/* An eval-frame entry, first: what it calls is read (the first runs of generators, which only
 * create them, are no calls: left out; their uretprobes' stack pointers match no call kept),
 * and the calls whose C calls returned unseen are popped: those at or below its stack pointer
 * (the stack grows down; the kernel keeps at most 64 uretprobes pending per thread, so deep
 * calls return unseen), with the frames evaluated inline above them. */
static __always_inline void handle_eval_entry(struct pt_regs *ctx, struct py_process *process,
					      struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct frame_info info = {};
	__u32 co_flags = 0;
	if (read_call_frame(process, buffers, frames, call, call->frame, &info, &co_flags))
		return;
	if (process->layout.frame_owner != OFFSET_NONE && info.owner == OWNED_BY_THREAD && (co_flags & CO_GENERATORS)) {
		frames->creation_sp = call->sp;
		return;
	}
	__s32 cut = frames->depth;
	for (int i = 0; i < MAX_FRAMES; i++) {
		__s32 index = kept_depth(frames) - 1 - i;
		if (index < 0)
			break;
		struct frame *frame = frame_at(frames, index);
		if (!frame->sp)
			continue;
		if (frame->sp > call->sp)
			break;
		cut = index;
	}
	unwind_then(ctx, frames, call, cut, HANDLE_EVAL_CALLER);
}

/* ... then the frame calling (the thread's current frame) must be the one on top: where it is
 * not, frames were evaluated inline, unseen. Frames the caller's chain holds above the top are
 * pushed (RECOVER: CPython 3.13's specialized __init__); frames kept above the caller
 * returned (a frame running when tracing began, evaluated inline): popped (UNWIND, then here
 * again). Then the call is pushed. */
static __always_inline void handle_eval_caller(struct pt_regs *ctx, struct py_process *process,
					       struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct py_layout *layout = &process->layout;
	struct frame_info info = {};
	__u64 caller = python_frame(layout, buffers, current_frame(layout, call->tstate), &info);
	struct frame *top = frames_top(frames);
	__u64 expected = top ? top->address : 0;
	if (caller != expected && frames->depth <= MAX_FRAMES) {
		/* the frames above the top, innermost first, if the top is in the caller's chain */
		__u32 above = 0, found = 0;
		__u64 cursor = caller;
		for (int i = 0; i < RECOVER_MAX; i++) {
			if (cursor == expected) {
				found = 1;
				break;
			}
			if (!cursor)
				break;
			__u32 co_flags = 0;
			if (layout->code_flags == OFFSET_NONE ||
			    read_target(&co_flags, sizeof(co_flags), info.code + layout->code_flags, NULL) ||
			    !(co_flags & CO_NO_MONITORING_EVENTS)) {
				__u32 slot = above;
				asm volatile("" : "+r"(slot)); /* keep the mask: the verifier needs it */
				call->chain[slot & (RECOVER_MAX - 1)] = cursor;
				above++;
			}
			cursor = python_frame(layout, buffers, info.previous, &info);
		}
		if (found) {
			call->chained = above;
			go_on(ctx, RECOVER);
			return;
		}
		/* the caller below the top: the frames above it returned */
		for (int i = 0; i < MAX_FRAMES; i++) {
			__s32 index = kept_depth(frames) - 1 - i;
			if (index < 0)
				break;
			if (frame_at(frames, index)->address == caller) {
				unwind_then(ctx, frames, call, index + 1, HANDLE_EVAL_CALLER);
				return;
			}
		}
		if (!caller) { /* no Python frame left: every frame kept returned */
			unwind_then(ctx, frames, call, 0, HANDLE_EVAL_CALLER);
			return;
		}
		count(COUNTER_STACK_MISMATCH);
	}
	push_call(ctx, frames, call, call->frame, call->sp, call->timestamp, PUSH_CALL);
}

/* The frames evaluated inline, outermost first, RECOVER_BATCH at a time; each begun when its
 * caller's CALL_ALLOC_AND_ENTER_INIT ran (CPython 3.13's __init__), or, where not known, when
 * found. Then the call. */
static __always_inline void handle_recover(struct pt_regs *ctx, struct py_process *process,
					   struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct call recovered = {.pid = call->pid, .tid = call->tid, .line = LINE_UNKNOWN};
	struct frame_info info = {};
	for (int i = 0; i < RECOVER_BATCH; i++) {
		__u32 left = call->chained;
		if (!left || left > RECOVER_MAX)
			break;
		call->chained = left - 1;
		__u32 index = left - 1;
		asm volatile("" : "+r"(index)); /* keep the mask: the verifier needs it */
		__u64 address = call->chain[index & (RECOVER_MAX - 1)];
		__u32 co_flags;
		if (read_call_frame(process, buffers, frames, &recovered, address, &info, &co_flags))
			continue;
		struct frame *top = frames_top(frames);
		__u64 began = init_started(frames, top ? top->address : 0);
		recovered.timestamp = began ? began : call->timestamp;
		push_call(ctx, frames, &recovered, address, 0, recovered.timestamp, began ? PUSH_CALL : PUSH_RECOVERED);
	}
	if (call->chained && call->chained <= RECOVER_MAX) {
		go_on(ctx, RECOVER);
		return;
	}
	push_call(ctx, frames, call, call->frame, call->sp, call->timestamp, PUSH_CALL);
}

/* An eval-frame return: the call made at this stack pointer ends, once the calls above it
 * (which returned unseen) are popped. A call deeper than the frames kept is the one on top. */
static __always_inline void handle_eval_return(struct pt_regs *ctx, struct py_process *process,
					       struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	__u64 sp = call->sp - 8; /* the return address popped */
	if (sp == frames->creation_sp) {
		frames->creation_sp = 0;
		return; /* a generator's creation: no call */
	}
	for (int i = 0; i < MAX_FRAMES; i++) {
		__s32 index = kept_depth(frames) - 1 - i;
		if (index < 0)
			return;
		struct frame *frame = frame_at(frames, index);
		if (frame->sp == sp) {
			unwind_then(ctx, frames, call, index + 1, HANDLE_EVAL_POPPED);
			return;
		}
		if (frame->sp > sp)
			break;
	}
	if (frames->depth > MAX_FRAMES)
		go_on(ctx, HANDLE_EVAL_POPPED);
}

/* ... it ends: its line is read from its frame, which the return has not reused yet. */
static __always_inline void handle_eval_popped(struct pt_regs *ctx, struct py_process *process,
					       struct walk_buffers *buffers, struct frames *frames, struct call *call)
{
	struct frame *frame = frames_top(frames);
	struct py_layout *layout = &process->layout;
	call->code = frame ? frame->code : 0;
	call->line = LINE_UNKNOWN;
	call->instruction = -1;
	if (frame && !read_bounded(buffers->frame, layout->frame_read, FRAME_BUF, frame->address, NULL))
		call->instruction = frame_instruction(layout, buffers->frame, frame->code_address);
	pop_call(ctx, frames, call, POP_RETURNED);
}

/* CPython 3.13's EXIT_INIT_CHECK: an __init__ entered by CALL_ALLOC_AND_ENTER_INIT returned
 * into its shim frame (the current frame), above which it was pushed. */
static __always_inline void handle_init_returned(struct pt_regs *ctx, struct py_process *process,
						 struct walk_buffers *buffers, struct frames *frames,
						 struct call *call)
{
	struct py_layout *layout = &process->layout;
	struct frame_info shim = {};
	__u64 shim_frame = current_frame(layout, frames->tstate);
	if (read_frame_info(layout, buffers, shim_frame, &shim) || layout->code_framesize == OFFSET_NONE)
		return;
	__u32 slots = 0;
	if (read_target(&slots, sizeof(slots), shim.code + layout->code_framesize, NULL))
		return;
	__u64 init = shim_frame + (__u64)slots * 8;
	struct frame_info info = {};
	__u32 co_flags;
	if (read_call_frame(process, buffers, frames, call, init, &info, &co_flags))
		return;
	struct frame *top = frames_top(frames);
	__u64 began = init_started(frames, shim.previous);
	if (top && top->address == init) { /* found in the chain at a call it made */
		if (began && (top->flags & FRAME_RECOVERED)) {
			top->start = began;
			top->flags &= ~FRAME_RECOVERED;
		}
		pop_call(ctx, frames, call, POP_RETURNED);
		return;
	}
	if (!began)
		count(COUNTER_INITS_UNTIMED);
	call->line = LINE_UNKNOWN;
	push_call(ctx, frames, call, init, 0, began ? began : call->timestamp, began ? PUSH_CALL : PUSH_RECOVERED);
	pop_call(ctx, frames, call, POP_RETURNED);
}

/* Which program handles a call (enum call_programs). */
static __always_inline __u32 handler_of(struct call *call)
{
	switch (call->kind) {
	case CALL_ENTRY:
		return call->route == ROUTE_EVAL_FRAME ? HANDLE_EVAL_ENTRY : HANDLE_USDT_ENTRY;
	case CALL_RETURN:
		return call->route == ROUTE_EVAL_FRAME ? HANDLE_EVAL_RETURN : HANDLE_USDT_RETURN;
	case INIT_CALLED:
		return HANDLE_INIT_CALLED;
	default:
		return HANDLE_INIT_RETURNED;
	}
}

/* What a handler program works on: the pending call, its process, its thread's stack, the
 * buffers; 0 when any is missing. */
struct handling {
	struct call *call;
	struct py_process *process;
	struct frames *frames;
	struct walk_buffers *buffers;
};

static __always_inline int handling(struct handling *h)
{
	__u32 zero = 0;
	h->call = pending_calls.lookup(&zero);
	h->buffers = call_buffers.lookup(&zero);
	if (!h->call || !h->buffers)
		return 0;
	__u32 pid = h->call->pid, tid = h->call->tid;
	h->process = py_processes.lookup(&pid);
	h->frames = thread_frames.lookup(&tid);
	return h->process && h->frames;
}

/* Each handler, a program of its own (enum call_programs). */
#define HANDLER_PROGRAM(name, handler)                                              \
	int name(struct pt_regs *ctx)                                               \
	{                                                                           \
		struct handling h;                                                  \
		if (handling(&h))                                                   \
			handler(ctx, h.process, h.buffers, h.frames, h.call);        \
		return 0;                                                           \
	}

HANDLER_PROGRAM(handle_usdt_entry_program, handle_usdt_entry)
HANDLER_PROGRAM(handle_usdt_return_program, handle_usdt_return)
HANDLER_PROGRAM(handle_eval_entry_program, handle_eval_entry)
HANDLER_PROGRAM(handle_eval_caller_program, handle_eval_caller)
HANDLER_PROGRAM(recover_program, handle_recover)
HANDLER_PROGRAM(handle_eval_return_program, handle_eval_return)
HANDLER_PROGRAM(handle_eval_popped_program, handle_eval_popped)
HANDLER_PROGRAM(handle_init_returned_program, handle_init_returned)

int handle_init_called_program(struct pt_regs *ctx)
{
	struct handling h;
	if (handling(&h))
		handle_init_called(h.process, h.frames, h.call);
	return 0;
}

int unwind_program(struct pt_regs *ctx)
{
	struct handling h;
	if (!handling(&h))
		return 0;
	if (unwind(ctx, h.frames, h.call))
		go_on(ctx, h.call->then);
	else
		go_on(ctx, UNWIND);
	return 0;
}

/* The thread's first event (or its state changed): the frames it is in are read first, by
 * the walk tail-called on (seed_walk, then seed_done). */
static __always_inline void start_seeding(struct pt_regs *ctx, struct py_process *process, struct call *call)
{
	__u32 zero = 0;
	struct walk *walk = call_walks.lookup(&zero);
	struct walk_buffers *buffers = call_buffers.lookup(&zero);
	if (!walk || !buffers)
		return;
	if (call->tstate)
		walk_start_tstate(walk, process, buffers, call->pid, call->tid, call->tstate);
	else
		walk_start(walk, call->pid, call->tid);
	/* its code objects are the process's: were they known by no incarnation (drained
	 * after the process had gone), they would go with its PID's, before its calls are named */
	__u32 *incarnation = incarnations.lookup(&call->pid);
	walk->incarnation = incarnation ? *incarnation : 0;
	call->seeded = 0;
	walk->sample.timestamp = call->timestamp;
	walk->sample.kind = SAMPLE_SEED;
	walk->sample.weight = 0;
	walk->sample.address = 0;
	walk->sample.syscall = -1;
	go_on(ctx, SEED_WALK);
}

/* A probe hit, of the calling thread. */
static __always_inline int route_event(struct pt_regs *ctx, __u64 *args, __u8 kind, __u8 route)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 pid = id >> 32, tid = (__u32)id, zero = 0;
	if (!tracer_enabled() || !process_traced(pid) || !thread_wanted(tid))
		return 0;
	count(COUNTER_EVENTS);
	int at_place = !(route == ROUTE_EVAL_FRAME && kind == CALL_RETURN);
	struct py_process *process = process_of(ctx, pid, args, at_place);
	struct frames *frames = thread_frames.lookup(&tid);
	if (!process || (!at_place && !(frames && frames->seeded)))
		return 0; /* an eval-frame return of a call not seen */
	struct call *call = pending_calls.lookup(&zero);
	if (!call)
		return 0;
	call->timestamp = now;
	call->pid = pid;
	call->tid = tid;
	call->kind = kind;
	call->route = route;
	call->line = route == ROUTE_USDT ? (__s32)args[2] : LINE_UNKNOWN;
	call->instruction = 0;
	call->code = 0;
	call->code_flags = 0;
	call->unwind_to = 0;
	call->chained = 0;
	call->state_frame = 0;
	int eval_entry = route == ROUTE_EVAL_FRAME && kind == CALL_ENTRY;
	call->tstate = eval_entry ? PT_REGS_PARM1(ctx) : 0;
	call->frame = eval_entry ? PT_REGS_PARM2(ctx) : 0;
	call->sp = route == ROUTE_EVAL_FRAME ? PT_REGS_SP(ctx) : 0;
	if (kind == CALL_CREATED) {
		if (frames && frames->seeded && frames->depth > 0) {
			call->code = frames->last_code;
			on_created(ctx, frames, call);
			frames_retract(frames);
		}
		return 0;
	}
	if (eval_entry && hooks_pending.lookup(&pid)) {
		hooks_pending.delete(&pid);
		bpf_send_signal(SIGSTOP);
	}
	if (!frames)
		frames = frames_of(pid, tid, now);
	if (!frames)
		return 0;
	frames->route = route;
	if (frames->seeded) {
		if (eval_entry)
			frames->tstate = call->tstate;
		else if (!(route == ROUTE_EVAL_FRAME && kind == CALL_RETURN) &&
			 !tstate_current(&process->layout, call_buffers.lookup(&zero), frames, call))
			frames->seeded = 0; /* its state went, with its frames: seeded again */
	}
	if (!frames->seeded) {
		unwind_then(ctx, frames, call, 0, SEED_START); /* none of the frames it had runs now */
		return 0;
	}
	if (call->tstate == 0)
		call->tstate = frames->tstate;
	if (route == ROUTE_USDT && (kind == CALL_ENTRY || kind == CALL_RETURN)) {
		/* the commonest events, handled here: a tail call, and the lookups its program
		 * makes again, would be some 8% of their cost */
		struct walk_buffers *buffers = call_buffers.lookup(&zero);
		if (!buffers)
			return 0;
		if (kind == CALL_ENTRY)
			handle_usdt_entry(ctx, process, buffers, frames, call);
		else
			handle_usdt_return(ctx, process, buffers, frames, call);
		return 0;
	}
	go_on(ctx, handler_of(call));
	return 0;
}

int seed_walk(struct pt_regs *ctx)
{
	__u32 zero = 0;
	struct walk *walk = call_walks.lookup(&zero);
	if (!walk)
		return 0;
	int done = walk_steps_in(walk, call_buffers.lookup(&zero), call_scratch.lookup(&zero), NULL);
	if (!done)
		call_programs.call(ctx, SEED_WALK);
	if (!done)
		walk->sample.flags |= SAMPLE_CUT_SHORT; /* out of tail calls */
	go_on(ctx, SEED_DONE);
	return 0;
}

int seed_done(struct pt_regs *ctx)
{
	__u32 zero = 0;
	struct call *call = pending_calls.lookup(&zero);
	struct walk *walk = call_walks.lookup(&zero);
	if (!call || !walk)
		return 0;
	__u32 pid = call->pid, tid = call->tid;
	struct py_process *process = py_processes.lookup(&pid);
	struct frames *frames = thread_frames.lookup(&tid);
	if (!process || !frames)
		return 0;
	if (call->seeded == 0)
		seed_begin(process, frames, walk, call);
	if (!seed_batch(ctx, frames, walk, call)) {
		go_on(ctx, SEED_DONE);
		return 0;
	}
	if (!frames->tstate) {
		count(COUNTER_NO_THREAD_STATE);
		return 0;
	}
	if (!call->tstate)
		call->tstate = frames->tstate;
	go_on(ctx, handler_of(call));
	return 0;
}

int seed_start(struct pt_regs *ctx)
{
	__u32 zero = 0;
	struct call *call = pending_calls.lookup(&zero);
	if (!call)
		return 0;
	__u32 pid = call->pid;
	struct py_process *process = py_processes.lookup(&pid);
	if (process)
		start_seeding(ctx, process, call);
	return 0;
}

/* The handlers each entry point calls (program.py generates them: args holds the probe's three
 * arguments, zeros where it has none, then BINARY_ARG and PLACE_ARG). */

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, CALL_ENTRY, ROUTE_USDT);
}

/* function__return(filename, funcname, lineno): also fires when an exception unwinds, and at
 * each yield and await. */
static __always_inline int on_function_return(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, CALL_RETURN, ROUTE_USDT);
}

/* Entry of _Py_MakeCoro (CPython 3.15): the function__entry just before, on this thread, was
 * a generator or coroutine being created, not run; it has no return. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, CALL_CREATED, ROUTE_USDT);
}

/* _PyEval_EvalFrameDefault(tstate, frame, throwflag) is called */
static __always_inline int on_eval_frame(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, CALL_ENTRY, ROUTE_EVAL_FRAME);
}

/* ... and returns */
static __always_inline int on_eval_frame_return(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, CALL_RETURN, ROUTE_EVAL_FRAME);
}

/* CPython 3.13's CALL_ALLOC_AND_ENTER_INIT and EXIT_INIT_CHECK instructions start */
static __always_inline int on_init_call(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, INIT_CALLED, ROUTE_EVAL_FRAME);
}

static __always_inline int on_init_return(struct pt_regs *ctx, __u64 *args)
{
	return route_event(ctx, args, INIT_RETURNED, ROUTE_EVAL_FRAME);
}

#endif
