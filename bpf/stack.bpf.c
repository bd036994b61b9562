/* pybpftrace stack: every call and return of the traced threads, in order. */
#include <uapi/linux/ptrace.h>
#include "events.h"

struct settings {
	__u32 max_depth;      /* 0: unlimited; else only calls shallower than this */
	__u8 only_tids;       /* trace only the threads in `tids` */
	__u8 only_function;   /* trace only inside calls of `function` */
	__u8 pad[2];
	char function[STRING_MAX];
};

BPF_ARRAY(settings, struct settings, 1);
BPF_HASH(tids, __u32, __u8, 4096);

#define MATCHES_FUNCTION 2 /* codes_known: the code object is --function's */

/* Whether a code object announced is --function's (its name, one byte a character, is). */
static __always_inline __u8 function_matches(struct code_event *event)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	if (!config || !config->only_function || event->name_kind != 1 || event->name_length >= STRING_MAX)
		return 0;
	for (int i = 0; i < STRING_MAX; i++) {
		if (i == event->name_length)
			return config->function[i] == 0 ? MATCHES_FUNCTION : 0;
		if (event->name[i] != config->function[i])
			return 0;
	}
	return 0;
}

#define CODE_FLAGS(event) function_matches(event)
#define FORGETS_THREADS
#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif
#include "common.h"
#include "frame_events.h"
/* the `samples` ring, where each thread's first stack goes */
#include "samples.h"

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);

static __always_inline int thread_wanted(__u32 tid)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	return config && (!config->only_tids || tids.lookup(&tid));
}

/* An event at this depth, unless a filter hides it: --function counts depths from its frame. */
static __always_inline void emit(struct frames *frames, struct call *call, __u8 kind, __u64 code, __s32 depth,
				 __s32 line, __s32 instruction, __u8 flags)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	if (!config)
		return;
	if (config->only_function) {
		if (!frames->inside)
			return;
		depth -= frames->function_depth;
	}
	if (config->max_depth && depth >= config->max_depth)
		return;
	struct call_event *event = events.ringbuf_reserve(sizeof(struct call_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	event->timestamp = call->timestamp;
	event->code = code;
	event->pid = call->pid;
	event->tid = call->tid;
	event->line = line;
	event->instruction = instruction;
	event->depth = depth;
	event->kind = kind;
	event->flags = flags | (frames->fresh ? CALL_FRESH : 0);
	event->incarnation = frames->incarnation;
	events.ringbuf_submit(event, 0);
	frames->fresh = 0;
}

static __always_inline void on_push(struct pt_regs *ctx, struct frames *frames, struct frame *frame,
				    struct call *call, __u32 how)
{
	__s32 depth = frames->depth - 1;
	if (!frames->inside && (call->code_flags & MATCHES_FUNCTION)) {
		frames->inside = 1;
		frames->function_depth = depth;
	}
	if (how == PUSH_SEEDED) /* user space has them from the thread's first stack */
		return;
	emit(frames, call, EVENT_CALL, call->code, depth, call->line, call->instruction,
	     how == PUSH_RECOVERED ? CALL_INEXACT : 0);
}

static __always_inline void on_pop(struct pt_regs *ctx, struct frames *frames, struct frame *frame, __u64 elapsed,
				   struct call *call, __u32 how)
{
	__s32 depth = frames->depth;
	if (how == POP_MISSED) /* the line it returned from is not known: line 0 */
		emit(frames, call, EVENT_RETURN, frame ? frame->code : 0, depth, 0, 0, CALL_INEXACT);
	else
		emit(frames, call, EVENT_RETURN, frame ? frame->code : call->code, depth, call->line, call->instruction, 0);
	if (frames->inside && depth == frames->function_depth)
		frames->inside = 0;
}

/* A return whose entry never fired: a call of the frame on top, at the depth below it. */
static __always_inline void on_unmatched(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	emit(frames, call, EVENT_RETURN, call->code, frames->depth, call->line, call->instruction, CALL_ENTRY_UNSEEN);
}

/* A return below every frame kept (the thread's frames when first seen could not be read). */
static __always_inline void on_began_before(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	emit(frames, call, EVENT_RETURN, call->code, -1, call->line, call->instruction, CALL_ENTRY_UNSEEN);
}

/* The entry just sent created a generator: user space takes it back. */
static __always_inline void on_created(struct pt_regs *ctx, struct frames *frames, struct call *call)
{
	emit(frames, call, EVENT_CREATED, call->code, frames->depth - 1, LINE_UNKNOWN, 0, 0);
}

/* The frames the thread was in at its first event go to user space ahead of the event. */
static __always_inline void on_seeded(struct pt_regs *ctx, struct frames *frames, struct walk *walk)
{
	send_sample(&walk->sample);
}

/* The thread exits. On the eval-frame route, the frames it was in when first seen return
 * unseen when evaluated inline: those still open return now (seen late); on the USDT route
 * every return is seen, and calls still open were cut short (os._exit, a killed process). */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	struct frames *frames = thread_frames.lookup(&tid);
	if (frames && frames->route == ROUTE_EVAL_FRAME) {
		struct call call = {.timestamp = now, .pid = bpf_get_current_pid_tgid() >> 32, .tid = tid};
		for (int i = 0; i < MAX_FRAMES; i++) {
			if (frames->depth <= 0)
				break;
			__u64 elapsed;
			struct frame *frame = frames_pop(frames, now, &elapsed);
			count(COUNTER_MISSED_RETURNS);
			on_pop(NULL, frames, frame, elapsed, &call, POP_MISSED);
		}
	}
	thread_frames.delete(&tid);
}
