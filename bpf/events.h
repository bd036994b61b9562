/* Layouts shared by the BPF programs and pybpftrace/events.py (which mirrors them with
 * struct formats; tests/test_events_layout.py compiles this header to keep the two equal). */
#ifndef PYBPFTRACE_EVENTS_H
#define PYBPFTRACE_EVENTS_H

#include <linux/types.h>

#define STRING_MAX 256

enum event_kind {
	EVENT_CALL = 1,
	EVENT_RETURN = 2,
};

/* A function entry or return. file and function are string ids: the addresses CPython
 * passed, announced once per process by a string_event on the strings ring buffer. */
struct call_event {
	__u64 timestamp; /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u64 file;
	__u64 function;
	__u32 pid;
	__u32 tid;
	__s32 line;
	__s32 depth; /* the thread's call depth, counted from its shallowest frame seen */
	__u8 kind;
	__u8 pad[7];
};

enum string_flags {
	STRING_TRUNCATED = 1,  /* longer than STRING_MAX - 1 bytes; text holds the start */
	STRING_UNREADABLE = 2, /* the read faulted; text is empty and the id will be sent again */
};

struct string_event {
	__u64 address;
	__u32 pid;
	__u8 flags;
	__u8 pad[3];
	char text[STRING_MAX]; /* NUL-terminated */
};

/* Per-CPU counters of what could not be sent to user space. */
enum counter {
	COUNTER_EVENTS_LOST = 0,
	COUNTER_STRINGS_LOST = 1,
	COUNTER_MAX = 2,
};

#endif
