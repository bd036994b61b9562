/* pybpftrace imports: each module import's start and end, with the module's name. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#ifdef STACKS
#define TRACKS_FORKS /* sampler.h's track_fork (event_stacks.h includes it) */
#endif
#include "common.h"

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);

#include "event_stacks.h"

static __always_inline int emit(struct pt_regs *ctx, __u8 kind, __u64 name, __u8 found)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	count(COUNTER_EVENTS);
	struct import_event *event = reserve_event(sizeof(struct import_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	event->timestamp = bpf_ktime_get_ns();
	event->pid = pid;
	event->tid = (__u32)id;
	event->kind = kind;
	event->found = found;
	event->truncated = 0;
	long length = bpf_probe_read_user_str(event->name, IMPORT_NAME_MAX, (void *)name);
	if (length < 0)
		event->name[0] = 0;
	else if (length == IMPORT_NAME_MAX) {
		char next = 0;
		bpf_probe_read_user(&next, 1, (void *)(name + IMPORT_NAME_MAX - 1));
		event->truncated = next != 0;
	}
	submit_event(ctx, event, event->timestamp, kind == IMPORT_START); /* --stacks: after the importing stack */
	return 0;
}

/* import__find__load__start(const char *name) */
static __always_inline int on_import_start(struct pt_regs *ctx, __u64 *args)
{
	return emit(ctx, IMPORT_START, args[0], 0);
}

/* import__find__load__done(const char *name, int found) */
static __always_inline int on_import_done(struct pt_regs *ctx, __u64 *args)
{
	return emit(ctx, IMPORT_DONE, args[0], args[1] != 0);
}
