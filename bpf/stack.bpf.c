/* pybpftrace stack: every function entry and return of the traced threads, in order. */
#include <uapi/linux/ptrace.h>
#include "events.h"

#define NAMES_MATCH(file, function) function_matches(function)
static __always_inline __u8 function_matches(const char *function);
#define FORGETS_THREADS
#include "common.h"
#include "call_events.h"

struct settings {
	__u32 max_depth;      /* 0: unlimited; else only calls shallower than this */
	__u8 only_tids;       /* trace only the threads in `tids` */
	__u8 only_function;   /* trace only inside calls of `function` */
	__u8 check_returns;   /* match returns with entries (CPython 3.15: see on_function_return) */
	__u8 pad;
	char function[STRING_MAX];
};

#define CHECKED_FRAMES 64 /* open calls whose names are kept for check_returns */

/* Events carry the depth relative to the thread's depth when tracing began (negative for
 * frames that began before), or, with only_function, relative to that function's frame.
 * --max-depth counts levels from the shallowest frame seen. */
struct thread_state {
	__s32 depth;          /* calls entered minus calls returned since tracing began */
	__s32 floor;          /* lowest depth seen: frames entered before tracing began */
	__s32 function_depth; /* depth of the outermost call of `function` running */
	__u32 inside;         /* that call is running */
	__u32 incarnation;    /* of the thread's process */
	__u8 fresh;           /* no event of this thread sent yet: see struct call_event */
	__u8 pad[3];
	__u64 open[CHECKED_FRAMES]; /* check_returns: each open call's names, by depth above floor */
};

enum names_match {
	MATCHES_FUNCTION = 1,
};

BPF_ARRAY(settings, struct settings, 1);
BPF_HASH(tids, __u32, __u8, 4096);
/* Not preallocated: a thread's state takes memory while the thread lives (it goes when the
 * thread exits); a thread beyond THREADS_MAX live ones is not traced, and counted. */
BPF_F_TABLE("hash", __u32, struct thread_state, threads, THREADS_MAX, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(blank_state, struct thread_state, 1); /* zeros, too big for the BPF stack */

/* Names are (file, function): whether function is --function's. */
static __always_inline __u8 function_matches(const char *text)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	if (!config || !config->only_function)
		return 0;
	for (int i = 0; i < STRING_MAX; i++) {
		if (text[i] != config->function[i])
			return 0;
		if (!text[i])
			return MATCHES_FUNCTION;
	}
	return 0;
}

/* The calling thread's state, if it is traced, with its ids and the settings. */
static __always_inline struct thread_state *current_thread(__u32 *pid_out, __u32 *tid_out,
							    struct settings **config)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = *pid_out = id >> 32, tid = *tid_out = (__u32)id;
	__u32 zero = 0;
	*config = settings.lookup(&zero);
	if (!*config || !tracer_enabled() || !process_traced(pid))
		return NULL;
	if ((*config)->only_tids && !tids.lookup(&tid))
		return NULL;
	struct thread_state *state = threads.lookup(&tid);
	if (state)
		return state;
	struct thread_state *blank = blank_state.lookup(&zero);
	if (!blank)
		return NULL;
	blank->incarnation = incarnation_of(pid);
	blank->fresh = 1;
	if (threads.insert(&tid, blank) < 0 && !threads.lookup(&tid)) {
		count(COUNTER_EVENTS);
		count(COUNTER_THREADS_FULL);
		return NULL;
	}
	return threads.lookup(&tid);
}

/* The thread exits: a new thread given its id starts afresh. */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	threads.delete(&tid);
}

static __always_inline __u64 names_key(__u64 *args)
{
	return args[0] ^ (args[1] * 0x9E3779B97F4A7C15ULL);
}

/* The slot of the call open at depth, or NULL where none is kept. */
static __always_inline __u64 *open_call(struct thread_state *state, __s32 depth)
{
	__u32 index = depth - state->floor;
	if (depth < state->floor || index >= CHECKED_FRAMES)
		return NULL;
	asm volatile("" : "+r"(index)); /* keep the mask: the verifier needs it */
	return &state->open[index & (CHECKED_FRAMES - 1)];
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u32 pid, tid;
	struct settings *config;
	struct thread_state *state = current_thread(&pid, &tid, &config);
	if (!state)
		return 0;
	__s32 depth = state->depth++;
	__s32 level = depth - state->floor;
	if (config->check_returns) {
		__u64 *slot = open_call(state, depth);
		if (slot)
			*slot = names_key(args);
	}
	if (config->only_function) {
		if (!state->inside) {
			struct name_ids ids = function_ids(ctx, args);
			int flags = intern_names(pid, state->incarnation, &ids, args);
			if (flags <= 0 || !(flags & MATCHES_FUNCTION))
				return 0;
			state->inside = 1;
			state->function_depth = depth;
		}
		level = depth = depth - state->function_depth;
	}
	if (config->max_depth && level >= config->max_depth)
		return 0;
	return emit_call_event(ctx, EVENT_CALL, pid, tid, state->incarnation, &state->fresh, args, depth);
}

/* A call ends (EVENT_RETURN), or is taken back (EVENT_CREATED: it created a generator). */
static __always_inline int leave(struct pt_regs *ctx, __u64 *args, __u8 kind)
{
	__u32 pid, tid;
	struct settings *config;
	struct thread_state *state = current_thread(&pid, &tid, &config);
	if (!state)
		return 0;
	__s32 depth;
	__u64 *open = kind == EVENT_RETURN && config->check_returns ? open_call(state, state->depth - 1) : NULL;
	if (open && *open != names_key(args)) {
		/* No entry was seen for this return (CPython 3.15, see on_function_return): the
		 * open call stays open, and this one shows as a call of it. */
		if (args[0] == args[1])
			return 0; /* the shim frame: its file and function are one string */
		depth = state->depth;
	} else {
		depth = --state->depth;
		if (depth < state->floor)
			state->floor = depth;
	}
	__s32 level = depth - state->floor;
	if (config->only_function) {
		if (!state->inside)
			return 0;
		if (depth == state->function_depth)
			state->inside = 0;
		level = depth = depth - state->function_depth;
	}
	if (config->max_depth && level >= config->max_depth)
		return 0;
	return emit_call_event(ctx, kind, pid, tid, state->incarnation, &state->fresh, args, depth);
}

/* function__return(filename, funcname, lineno): also fires when an exception unwinds. CPython
 * 3.15 also fires returns with no entry: for a generator resumed by throw(), and for __init__
 * calls it has specialized (CALL_ALLOC_AND_ENTER_INIT pushes the __init__ frame without
 * function__entry, under a shim frame whose return fires too, named "__init__" in a file
 * "__init__", line -1). With check_returns such a return leaves the stack as it is. */
static __always_inline int on_function_return(struct pt_regs *ctx, __u64 *args)
{
	return leave(ctx, args, EVENT_RETURN);
}

/* Entry of _Py_MakeCoro (CPython 3.15): the function__entry just before, on this thread, was
 * a generator or coroutine being created, not run; it has no return. Undo its depth. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	return leave(ctx, args, EVENT_CREATED);
}
