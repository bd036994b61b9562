/* Layouts shared by the BPF programs and pybpftrace/events.py (which mirrors them with
 * struct formats; tests/test_events_layout.py compiles this header to keep the two equal). */
#ifndef PYBPFTRACE_EVENTS_H
#define PYBPFTRACE_EVENTS_H

#include <linux/types.h>

#define STRING_MAX 256

enum event_kind {
	EVENT_CALL = 1,
	EVENT_RETURN = 2,
	EVENT_CREATED = 3, /* the thread's last call was a generator's creation: take it back */
	EVENT_LINE = 4,    /* a new line runs (the line probe); depth is 0 */
};

/* Every event starts with its timestamp. */

/* A function entry or return. file and function are the ids of the strings CPython passed
 * (common.h's name_id); their text comes once per process in a names_event. */
struct call_event {
	__u64 timestamp; /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u64 file;
	__u64 function;
	__u32 pid;
	__u32 tid;
	__s32 line;
	__s32 depth; /* call depth: see struct thread_state in stack.bpf.c */
	__u8 kind;
	__u8 fresh;  /* the first event sent of a thread the kernel had not seen: a thread id that
	              * may have been another thread's, whose state user space must drop */
	__u8 pad[2];
	__u32 incarnation; /* of the process: see common.h */
};

enum names_flags {
	FIRST_TRUNCATED = 1, /* longer than STRING_MAX - 1 bytes; the text holds its start */
	SECOND_TRUNCATED = 2,
	FIRST_UNREADABLE = 4, /* the read faulted; the text is empty, the pair is sent again */
	SECOND_UNREADABLE = 8,
};

/* Two strings CPython passed, e.g. (file, function): announced once per process and pair
 * of ids. A NULL address comes with an empty text. */
struct names_event {
	__u64 first;
	__u64 second;
	__u32 pid;
	__u32 incarnation;
	__u8 flags;
	__u8 pad[7];
	char first_text[STRING_MAX];  /* NUL-terminated */
	char second_text[STRING_MAX];
};

/* A garbage collection, reported when it is done. */
struct gc_event {
	__u64 timestamp;  /* when it ended */
	__u64 duration;   /* its pause, from gc__start; 0 when that was not seen */
	__s64 collected;  /* objects collected plus uncollectable found */
	__u32 pid;
	__u32 tid;
	__s32 generation; /* -1 when its start was not seen */
	__u32 pad;
};

#define IMPORT_NAME_MAX 128

enum import_kind {
	IMPORT_START = 1,
	IMPORT_DONE = 2,
};

/* import__find__load__start/done: the module's name is read each time (module names are
 * short-lived strings whose addresses are soon reused). */
struct import_event {
	__u64 timestamp;
	__u32 pid;
	__u32 tid;
	__u8 kind;
	__u8 found;     /* IMPORT_DONE: the module was found and loaded */
	__u8 truncated; /* the name is longer than IMPORT_NAME_MAX - 1 bytes */
	__u8 pad[5];
	char name[IMPORT_NAME_MAX];
};

#define HISTOGRAM_BUCKETS 64

/* calls: what the kernel keeps per function (key: its process and its two name ids). */
struct function_key {
	__u64 file;
	__u64 function;
	__u32 pid;
	__u32 incarnation;
};

struct function_stats {
	__u64 calls;   /* returns seen */
	__u64 timed;   /* of those, calls whose entry was seen */
	__u64 total;   /* ns, inclusive, over the timed calls */
	__u64 self;    /* ns, without the callees' time */
	__u64 max;     /* ns */
	__s32 line;    /* a line its entries reported */
	__u32 named;   /* its names were sent (until then, tried at each of its returns) */
	__u32 histogram[HISTOGRAM_BUCKETS]; /* timed calls by log2 of their ns */
};

/* stack --folded: the call tree, kept in the kernel. A node is a call path: its id mixes its
 * parent's id with its frame, so equal paths meet at the same node without any allocation.
 * Each thread's tree hangs from a root: the frames running when tracing began. */
struct call_node {
	__u64 parent; /* a node's or a root's id */
	__u64 file;
	__u64 function;
	__u64 self;   /* ns with this call on top of its thread's stack */
	__u64 calls;
	__u32 pid;
	__s32 line;   /* the line the entry reported; DEEPER_FRAMES_LINE: see folded.bpf.c */
	__u32 incarnation;
	__u32 named;  /* its names were sent (until then, tried at each of its calls) */
};

/* The frames that were running when a thread was first seen, one root per frame: a root is
 * named when its frame returns (its name is then known), and a new root becomes its parent. */
struct call_root {
	__u64 parent; /* the root above, once this one is named; 0 while it is the top */
	__u64 file;   /* 0 until named */
	__u64 function;
	__u64 self;
	__u32 pid;
	__u32 tid;
	__s32 line;   /* the line its return reported */
	__u32 incarnation;
};

/* A traced process forked a child (with --follow-forks). */
struct fork_event {
	__u32 parent;
	__u32 child;
};

/* Values of the `processes` map (with --follow-forks). */
enum process_state {
	PROCESS_ATTACHING = 0, /* forked by a traced process; its uprobes are being attached */
	PROCESS_TRACED = 1,
};

/* An audit event (sys.audit): its name inline, the args tuple and its items as raw snapshots of
 * their memory, which user space decodes with the traced version's object layout
 * (pybpftrace/pyobjects.py). A tuple among the items has its first items snapshotted too. */
#define AUDIT_ITEMS 8
#define AUDIT_NESTED 4
#define AUDIT_TUPLE_BYTES 96
#define AUDIT_ITEM_BYTES 256
#define AUDIT_NESTED_BYTES 128

/* The objects an audit event snapshots, and the names of their types (the address of each
 * one's tp_name, announced on the names ring with its type as the pair's second address). */
struct audit_objects {
	__u64 tuple;                             /* the args tuple */
	__u64 items[AUDIT_ITEMS];                /* its first items; 0: none */
	__u64 nested[AUDIT_ITEMS][AUDIT_NESTED]; /* the first items of each tuple item */
	__u64 tuple_type_name;
	__u64 item_type_names[AUDIT_ITEMS];
	__u64 nested_type_names[AUDIT_ITEMS][AUDIT_NESTED];
};

struct audit_event {
	__u64 timestamp;
	struct audit_objects objects;
	__u32 pid;
	__u32 tid;
	__u32 incarnation;
	__u32 binary;     /* which traced binary fired it: ProgramSpec.binary_constants */
	/* bytes of each snapshot read: an object at the end of a mapping is read in part */
	__u16 tuple_read;
	__u16 items_read[AUDIT_ITEMS];
	__u16 nested_read[AUDIT_ITEMS][AUDIT_NESTED];
	__u8 flags;       /* of the name: FIRST_TRUNCATED, FIRST_UNREADABLE */
	__u8 pad[5];
	char name[STRING_MAX];
	__u8 tuple_bytes[AUDIT_TUPLE_BYTES];
	__u8 item_bytes[AUDIT_ITEMS][AUDIT_ITEM_BYTES];
	__u8 nested_bytes[AUDIT_ITEMS][AUDIT_NESTED][AUDIT_NESTED_BYTES];
};

/* Per-CPU counters: events the programs handled, and what they could not keep, by cause
 * (pybpftrace/session.py words each one for the summary line). */
enum counter {
	COUNTER_EVENTS = 0,
	COUNTER_EVENTS_LOST = 1,    /* the events ring buffer was full */
	COUNTER_NAMES_LOST = 2,     /* a pair of names could not be announced: the names ring was full */
	COUNTER_THREADS_FULL = 3,   /* an event of a thread for which no state could be kept */
	COUNTER_PROCESSES_FULL = 4, /* a process beyond the incarnations map */
	COUNTER_DEEP_CALLS = 5,     /* calls deeper than the shadow stack (frames.h) */
	COUNTER_NODES_FULL = 6,     /* folded: calls kept under a lost-paths frame: the nodes map was full */
	COUNTER_PATHS_LOST = 7,     /* folded: calls not kept at all: the lost-paths map was full too */
	COUNTER_ROOTS_FULL = 8,     /* folded: threads with no root: the roots map was full */
	COUNTER_FUNCTIONS_FULL = 9, /* calls: returns not counted: the functions map was full */
	COUNTER_COUNTS_FULL = 10,   /* top, lines: entries not counted: the counts map was full */
	COUNTER_ENDED_FULL = 11,    /* folded: threads that exited with calls open, not kept */
	COUNTER_NO_MEMORY = 12,     /* an entry of a map not preallocated the kernel could not allocate */
	COUNTER_MAX = 13,
};

#endif
