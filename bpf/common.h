/* What every program shares: the switch that turns it on, counters, and names by id. */
#ifndef PYBPFTRACE_COMMON_H
#define PYBPFTRACE_COMMON_H

#include "events.h"

#ifndef NAMES_PAGES
#define NAMES_PAGES 64
#endif
#ifndef KNOWN_NAMES_MAX
#define KNOWN_NAMES_MAX 65536
#endif

/* Raised by user space once every uprobe is attached, lowered before any is removed:
 * attaching and detaching take time, one uprobe after another, and a program that saw
 * entries without their returns (or the reverse) would count depths wrong. */
BPF_ARRAY(tracing, __u32, 1);

static __always_inline int tracer_enabled(void)
{
	__u32 zero = 0;
	__u32 *on = tracing.lookup(&zero);
	return on && *on;
}

BPF_PERCPU_ARRAY(counters, __u64, COUNTER_MAX);

static __always_inline void count(__u32 counter)
{
	__u64 *value = counters.lookup(&counter);
	if (value)
		*value += 1;
}

#ifdef FOLLOW_FORKS
#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif
/* The traced processes, and the children they fork: those enter as PROCESS_ATTACHING and
 * user space, told on the `forks` ring buffer, attaches to them. Until all their uprobes are
 * in place their events are ignored, so no entry is counted without its return's probe. */
BPF_HASH(processes, __u32, __u8, 65536);
BPF_RINGBUF_OUTPUT(forks, 1);

TRACEPOINT_PROBE(task, task_newtask)
{
	if (args->clone_flags & CLONE_THREAD)
		return 0;
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (!processes.lookup(&parent))
		return 0;
	__u32 child = args->pid;
	__u8 state = PROCESS_ATTACHING;
	processes.update(&child, &state);
	struct fork_event *event = forks.ringbuf_reserve(sizeof(struct fork_event));
	if (!event)
		return 0;
	event->parent = parent;
	event->child = child;
	forks.ringbuf_submit(event, 0);
	return 0;
}
#endif

/* Whether this process's events count: never the tracer's own (it may run the very binary
 * traced with --binary or --all); with --follow-forks, only once fully attached. */
static __always_inline int process_traced(__u32 pid)
{
	if (pid == TRACER_PID)
		return 0;
#ifdef FOLLOW_FORKS
	__u8 *state = processes.lookup(&pid);
	return state && *state == PROCESS_TRACED;
#else
	return 1;
#endif
}

/* Names by id. CPython passes strings as pointers into str objects: (file, function) for
 * calls. A pair is read once per process, sent on the `names` ring buffer, and referred to
 * by its two addresses after that. Keying on the pair, not on each address, matters: a
 * freed str's address is soon reused by another string, but a code object's file and name
 * strings are freed and both reused at once only when its whole module is gone. */
struct names_key {
	__u64 first;
	__u64 second;
	__u32 pid;
	__u32 pad;
};

BPF_RINGBUF_OUTPUT(names, NAMES_PAGES);
/* Value: the pair's match flags (see NAMES_MATCH). */
BPF_TABLE("lru_hash", struct names_key, __u8, known_names, KNOWN_NAMES_MAX);

/* Flags worth caching for a newly read pair: a program that filters on names defines
 * NAMES_MATCH(first, second) before including this header. */
#ifndef NAMES_MATCH
#define NAMES_MATCH(first, second) 0
#endif

static __always_inline __u8 read_name(char *text, __u64 address, __u8 truncated, __u8 unreadable)
{
	text[0] = 0;
	if (!address) /* CPython passes NULL for names it cannot encode as UTF-8 */
		return 0;
	long length = bpf_probe_read_user_str(text, STRING_MAX, (void *)address);
	if (length < 0) {
		text[0] = 0;
		return unreadable;
	}
	if (length == STRING_MAX) {
		char next = 0;
		bpf_probe_read_user(&next, 1, (void *)(address + STRING_MAX - 1));
		if (next)
			return truncated;
	}
	return 0;
}

/* Make sure user space knows the pair (reading the second text at second_text: the second
 * address itself, or 0 when it is only part of the key); return its cached flags, or -1 when
 * it could not be announced. */
static __always_inline int announce_names(__u32 pid, __u64 first, __u64 second, __u64 second_text)
{
	struct names_key key = {.first = first, .second = second, .pid = pid};
	__u8 *known = known_names.lookup(&key);
	if (known)
		return *known;

	struct names_event *event = names.ringbuf_reserve(sizeof(struct names_event));
	if (!event)
		return -1;
	event->first = first;
	event->second = second;
	event->pid = pid;
	event->flags = read_name(event->first_text, first, FIRST_TRUNCATED, FIRST_UNREADABLE) |
		       read_name(event->second_text, second_text, SECOND_TRUNCATED, SECOND_UNREADABLE);
	__u8 flags = NAMES_MATCH(event->first_text, event->second_text);
	int unreadable = event->flags & (FIRST_UNREADABLE | SECOND_UNREADABLE);
	names.ringbuf_submit(event, 0);
	if (!unreadable) /* else read it again next time */
		known_names.update(&key, &flags);
	return flags;
}

/* The pair of strings at first and second; -1 when it could not be announced (the caller
 * must then drop its event, which would name nothing). */
static __always_inline int intern_names(__u32 pid, __u64 first, __u64 second)
{
	return announce_names(pid, first, second, second);
}

/* The string at text, keyed with the object that owns it (say, a type and its tp_name): the
 * owner comes with an empty second text. Both are reused together far more rarely than the
 * string's address alone. */
static __always_inline int intern_owned_name(__u32 pid, __u64 text, __u64 owner)
{
	return announce_names(pid, text, owner, 0);
}

/* Counts kept in the kernel, by process, name pair and line (the programs that aggregate:
 * lines, top); `generation` is the program's own use. Per CPU, so that threads counting the
 * same function on two CPUs do not fight over one cache line; user space adds them up. */
#ifndef COUNTS_MAX
#define COUNTS_MAX 131072
#endif

struct count_key {
	__u64 first;
	__u64 second;
	__u32 pid;
	__s32 line;
	__u32 generation;
	__u32 pad;
};

BPF_PERCPU_HASH(counts, struct count_key, __u64, COUNTS_MAX);

/* Add to the count under key (this CPU's share; a share below 0 wraps, and user space reads
 * the sum as signed). A new key's names are announced first; when they cannot be, the event
 * is lost. */
static __always_inline void count_under(struct count_key *key, __u64 amount)
{
	__u64 *counted = counts.lookup(key);
	if (counted) {
		*counted += amount;
		return;
	}
	if (intern_names(key->pid, key->first, key->second) < 0) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	if (counts.insert(key, &amount) < 0) { /* another CPU was first, or the map is full */
		counted = counts.lookup(key);
		if (counted)
			*counted += amount;
		else
			count(COUNTER_EVENTS_LOST);
	}
}

#endif
