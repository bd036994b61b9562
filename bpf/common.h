/* What every program shares: the switch that turns it on, counters, and strings by id. */
#ifndef PYBPFTRACE_COMMON_H
#define PYBPFTRACE_COMMON_H

#include "events.h"

#ifndef STRINGS_PAGES
#define STRINGS_PAGES 64
#endif
#ifndef KNOWN_STRINGS_MAX
#define KNOWN_STRINGS_MAX 65536
#endif

struct string_key {
	__u32 pid;
	__u32 pad;
	__u64 address;
};

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

/* Strings by id: a string CPython passes (a file or function name) is read once per process
 * and address, sent on the `strings` ring buffer, and referred to by its address after that. */
BPF_RINGBUF_OUTPUT(strings, STRINGS_PAGES);
/* Value: the string's match flags (see string_matches in the program). */
BPF_TABLE("lru_hash", struct string_key, __u8, known_strings, KNOWN_STRINGS_MAX);
BPF_PERCPU_ARRAY(counters, __u64, COUNTER_MAX);

static __always_inline void count(__u32 counter)
{
	__u64 *value = counters.lookup(&counter);
	if (value)
		*value += 1;
}

/* Programs define this: flags worth caching for a newly read string. */
static __always_inline __u8 string_matches(const char *text);

/* Make sure user space knows the string at address; return its cached flags, or -1 when it
 * could not be announced (the caller must then drop its event, which would name nothing). */
static __always_inline int intern_string(__u32 pid, __u64 address)
{
	struct string_key key = {.pid = pid, .address = address};
	__u8 *known = known_strings.lookup(&key);
	if (known)
		return *known;
	if (!address) /* CPython passes NULL for names it cannot encode as UTF-8 */
		return 0;

	struct string_event *event = strings.ringbuf_reserve(sizeof(struct string_event));
	if (!event) {
		count(COUNTER_STRINGS_LOST);
		return -1;
	}
	event->address = address;
	event->pid = pid;
	event->flags = 0;
	long length = bpf_probe_read_user_str(event->text, STRING_MAX, (void *)address);
	if (length < 0) {
		event->text[0] = 0;
		event->flags = STRING_UNREADABLE;
		strings.ringbuf_submit(event, 0);
		return 0;
	}
	if (length == STRING_MAX) {
		char next = 0;
		bpf_probe_read_user(&next, 1, (void *)(address + STRING_MAX - 1));
		if (next)
			event->flags = STRING_TRUNCATED;
	}
	__u8 flags = string_matches(event->text);
	strings.ringbuf_submit(event, 0);
	known_strings.update(&key, &flags);
	return flags;
}

#endif
