/* pybpftrace stack: every function entry and return of the traced threads, in order. */
#include <uapi/linux/ptrace.h>
#include "events.h"

#define NAMES_MATCH(file, function) function_matches(function)
static __always_inline __u8 function_matches(const char *function);
#include "common.h"
#include "call_events.h"

struct settings {
	__u32 max_depth;      /* 0: unlimited; else only calls shallower than this */
	__u8 only_tids;       /* trace only the threads in `tids` */
	__u8 only_function;   /* trace only inside calls of `function` */
	__u8 pad[2];
	char function[STRING_MAX];
};

/* Events carry the depth relative to the thread's depth when tracing began (negative for
 * frames that began before), or, with only_function, relative to that function's frame.
 * --max-depth counts levels from the shallowest frame seen. */
struct thread_state {
	__s32 depth;          /* calls entered minus calls returned since tracing began */
	__s32 floor;          /* lowest depth seen: frames entered before tracing began */
	__s32 function_depth; /* depth of the outermost call of `function` running */
	__u32 inside;         /* that call is running */
};

enum names_match {
	MATCHES_FUNCTION = 1,
};

BPF_ARRAY(settings, struct settings, 1);
BPF_HASH(tids, __u32, __u8, 4096);
BPF_TABLE("lru_hash", __u32, struct thread_state, threads, 65536);

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

static __always_inline struct thread_state *thread(__u32 pid, __u32 tid, struct settings **config)
{
	__u32 zero = 0;
	*config = settings.lookup(&zero);
	if (!*config || !tracer_enabled() || !process_traced(pid))
		return NULL;
	if ((*config)->only_tids && !tids.lookup(&tid))
		return NULL;
	struct thread_state fresh = {};
	return threads.lookup_or_try_init(&tid, &fresh);
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct settings *config;
	struct thread_state *state = thread(pid, tid, &config);
	if (!state)
		return 0;
	__s32 depth = state->depth++;
	__s32 level = depth - state->floor;
	if (config->only_function) {
		if (!state->inside) {
			int flags = intern_names(pid, args[0], args[1]);
			if (flags <= 0 || !(flags & MATCHES_FUNCTION))
				return 0;
			state->inside = 1;
			state->function_depth = depth;
		}
		level = depth = depth - state->function_depth;
	}
	if (config->max_depth && level >= config->max_depth)
		return 0;
	return emit_call_event(EVENT_CALL, pid, tid, args, depth);
}

/* A call ends (EVENT_RETURN), or is taken back (EVENT_CREATED: it created a generator). */
static __always_inline int leave(__u64 *args, __u8 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct settings *config;
	struct thread_state *state = thread(pid, tid, &config);
	if (!state)
		return 0;
	__s32 depth = --state->depth;
	if (depth < state->floor)
		state->floor = depth;
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
	return emit_call_event(kind, pid, tid, args, depth);
}

/* function__return(filename, funcname, lineno): also fires when an exception unwinds */
static __always_inline int on_function_return(struct pt_regs *ctx, __u64 *args)
{
	return leave(args, EVENT_RETURN);
}

/* Entry of _Py_MakeCoro (CPython 3.15): the function__entry just before, on this thread, was
 * a generator or coroutine being created, not run; it has no return. Undo its depth. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	return leave(args, EVENT_CREATED);
}
