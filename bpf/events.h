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

enum call_flags {
	CALL_FRESH = 1,        /* the first event sent of a thread the kernel had not seen: a thread
	                        * id that may have been another thread's, whose state user space must
	                        * drop; its stack at that moment came just before on `samples` */
	CALL_INEXACT = 2,      /* a return noticed after it happened (its time: when it was noticed),
	                        * or an entry found in the frame chain (its time: when it was found) */
	CALL_ENTRY_UNSEEN = 4, /* a return whose entry never fired (CPython 3.15 resuming a generator
	                        * in throw()): a call of the frame open below it */
};

/* A function entry or return. code is the code object's id (pystacks.h's code_id): its
 * names, first line and line table come once per process on `codes`. */
struct call_event {
	__u64 timestamp;   /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u64 code;
	__u32 pid;
	__u32 tid;
	__s32 line;        /* the line the probe reported; LINE_UNKNOWN (frames.h): see instruction */
	__s32 instruction; /* the frame's instruction, a byte offset (the eval-frame route) */
	__s32 depth;       /* the thread's call depth: its frames below this one, from its root */
	__u8 kind;
	__u8 flags;        /* enum call_flags */
	__u8 pad[2];
	__u32 incarnation; /* of the process: see common.h */
	__u32 pad2;
};

/* A line that runs (the line probe, pybpftrace lines --stream): file and function are the ids
 * of the strings CPython passed (common.h's name_id); their text comes once per process in a
 * names_event. */
struct line_event {
	__u64 timestamp;
	__u64 file;
	__u64 function;
	__u32 pid;
	__u32 tid;
	__s32 line;
	__u32 incarnation;
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

/* calls: what the kernel keeps per function (key: its process and its code object's id). */
struct function_key {
	__u64 code;
	__u32 pid;
	__u32 incarnation;
};

struct function_stats {
	__u64 calls;   /* calls that began while traced (entries seen, and calls seen only returning) */
	__u64 timed;   /* of those, calls that ended: entry and return seen */
	__u64 total;   /* ns, inclusive, over the timed calls */
	__u64 self;    /* ns, without the callees' time */
	__u64 max;     /* ns */
	__u64 partial; /* calls running when tracing began that ended while traced */
	__u64 partial_total; /* ns of those while traced, inclusive */
	__u64 partial_self;
	__u64 cut;     /* calls running when their thread exited */
	__u64 cut_total; /* ns of those up to the exit */
	__u64 cut_self;
	__u32 histogram[HISTOGRAM_BUCKETS]; /* timed calls by log2 of their ns */
};

/* stack --folded: the call tree, kept in the kernel. A node is a call path: its id mixes its
 * parent's id with its frame, so equal paths meet at the same node without any allocation.
 * Each thread's tree hangs from a root: the frames running when tracing began. */
struct call_node {
	__u64 parent; /* a node's or a root's id */
	__u64 code;   /* the code object's id; 0: see kind */
	__u64 self;   /* ns with this call on top of its thread's stack */
	__u64 calls;
	__u32 pid;
	__u32 incarnation;
	__u32 kind;   /* NODE_CALL; NODE_DEEPER: the calls deeper than MAX_FRAMES (folded.bpf.c) */
	__u32 pad;
};

/* Where a thread's tree starts. The frames it was in when first seen are nodes above its calls
 * (read from memory); where they could not be read, each frame that returns names this root
 * (code), and a new root becomes its parent. */
struct call_root {
	__u64 parent; /* the root above, once this one is named; 0 while it is the top */
	__u64 code;   /* 0 until named */
	__u64 self;
	__u32 pid;
	__u32 tid;
	__u32 incarnation;
	__u32 pad;
};

/* A traced process forked a child (with --follow-forks). */
struct fork_event {
	__u32 parent;
	__u32 child;
};

/* A process the frame walker should know of (sampler.h, with walk_settings.track): one that
 * exec'd (user space looks at what it runs, or says it could not: `program` is what it exec'd),
 * one forked by a process whose stacks are read (the kernel registered it already, with its
 * parent's layout and addresses), or, with walk_settings.births, any other process forked (user
 * space keeps the tree of processes under its roots). */
enum process_event_kind {
	PROCESS_EXECED = 1,
	PROCESS_FORKED = 2,
	PROCESS_BORN = 3,
};

#define PROGRAM_MAX 112

struct process_event {
	__u32 pid;
	__u32 parent;                    /* PROCESS_FORKED, PROCESS_BORN */
	__u32 kind;
	__u32 pad;
	char program[PROGRAM_MAX];       /* PROCESS_EXECED: the path exec'd, cut at PROGRAM_MAX - 1 */
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

/* Python stacks read out of the interpreter's memory (bpf/pystacks.h). */

#define OFFSET_NONE 0xffff   /* a field this version does not have */
#define OWNER_NONE 0xff

enum instruction_kind {
	INSTR_LASTI_BYTES = 1, /* 3.9: f_lasti, an int counting bytes */
	INSTR_LASTI_UNITS = 2, /* 3.10: f_lasti, an int counting 2-byte code units */
	INSTR_POINTER = 3,     /* 3.11+: a pointer into the code object's co_code_adaptive */
};

/* How a frame tells the generator (or coroutine) that owns it, for --async. */
enum generator_kind {
	GENERATOR_NONE = 0,
	GENERATOR_POINTER = 1,           /* 3.7-3.10: PyFrameObject.f_gen, NULL for other frames */
	GENERATOR_EMBEDDED = 2,          /* 3.11+: the frame is the generator's gi_iframe, owned by it */
};

/* Where one CPython keeps what the walker reads, in bytes (pybpftrace/interpreter.py: from a
 * table before 3.13, from _Py_DebugOffsets after). */
struct py_layout {
	__u16 runtime_interpreters;      /* in _PyRuntime: the first interpreter */
	__u16 interp_next;
	__u16 interp_threads;            /* the interpreter's first thread state */
	__u16 tstate_next;
	__u16 tstate_thread_id;          /* pthread_self(): glibc's struct pthread */
	__u16 tstate_native_thread_id;   /* the kernel's TID; OFFSET_NONE before 3.11 */
	__u16 tstate_frame;              /* the current frame, or the cframe holding it */
	__u16 cframe_current_frame;      /* OFFSET_NONE: tstate_frame is the frame */
	__u16 pthread_tid;               /* the TID in glibc's struct pthread (found at run time) */
	__u16 frame_previous;
	__u16 frame_code;
	__u16 frame_instruction;
	__u16 frame_owner;               /* OFFSET_NONE before 3.11 */
	__u16 code_filename;
	__u16 code_name;
	__u16 code_firstlineno;
	__u16 code_linetable;
	__u16 code_instructions;         /* co_code_adaptive (3.11+): the first instruction */
	__u16 code_firsttraceable;       /* _co_firsttraceable; OFFSET_NONE where absent */
	__u16 code_flags;                /* co_flags */
	__u16 code_framesize;            /* co_framesize (3.12+): a frame's size, in pointers */
	__u16 str_length;                /* in characters */
	__u16 str_state;                 /* interned:2, kind:3, compact:1, ascii:1 */
	__u16 str_ascii_data;            /* characters of a compact ASCII str */
	__u16 str_compact_data;          /* of another compact str */
	__u16 bytes_size;
	__u16 bytes_data;
	__u16 runtime_gil;               /* the GIL's state in _PyRuntime (up to 3.11); OFFSET_NONE */
	__u16 interp_gil;                /* the pointer to it in the interpreter (3.12+); OFFSET_NONE */
	__u16 tstate_read;               /* bytes to read of a thread state, a frame, a code */
	__u16 frame_read;
	__u16 code_read;
	__u8 instruction_kind;           /* enum instruction_kind */
	__u8 owner_skipped;              /* frames owned by this or above are not Python's: the
	                                  * C stack's shim, the interpreter's; OWNER_NONE */
	__u8 owner_generator;            /* a generator's frame is never incomplete */
	__u8 generator_kind;             /* enum generator_kind */
	__u16 frame_generator;           /* f_gen's offset in the frame, or gi_iframe's in the generator */
	__u8 pad[4];
	__u64 code_tag_mask;             /* 3.14+: f_executable is a tagged _PyStackRef */
};

/* A process whose Python stacks are read: its interpreter's layout and addresses. */
struct py_process {
	struct py_layout layout;
	__u64 runtime;                   /* _PyRuntime */
	__u64 code_type;                 /* PyCode_Type */
	__u16 version;                   /* major << 8 | minor: how its line tables read */
	__u8 pad[6];
};

#define SAMPLE_FRAMES_MAX 1024       /* frames a sample holds; deeper stacks are truncated */

/* One frame of a sample: its code object, by an id mixing the process, the code object's
 * address and what it holds (code_id in pystacks.h), and its instruction. While the walk
 * runs, the same slot holds the frame as found: the code object's address and its owner. */
struct sample_frame {
	__u64 code;                      /* 0: not a code object, or unreadable */
	__s32 instruction;               /* byte offset of the instruction in the code's bytecode */
	__u32 owner;                     /* while walking: the frame's owner; sent: with ASYNC_TASKS,
	                                  * its generator's tag (pystacks.h generator_tag), else 0 */
};

enum sample_kind {
	SAMPLE_CPU = 1,                  /* a tick of the sampling clock, on a CPU */
	SAMPLE_DUMP = 2,                 /* a thread's stack, read by pybpftrace dump */
	SAMPLE_OFF_CPU = 3,              /* a wait in a system call, over: weight ns, syscall */
	SAMPLE_PREEMPTED = 4,            /* taken off its CPU while runnable: its stack, weight 0 */
	SAMPLE_RESUMED = 5,              /* back on a CPU after SAMPLE_PREEMPTED: no frames, weight ns */
	SAMPLE_SHORT_WAITS = 6,          /* an exiting thread's waits shorter than --min-block: weight ns */
	SAMPLE_EVENT = 7,                /* the stack an event fired in (--stacks): its timestamp is the
	                                  * event's, and the event follows it on its own ring */
	SAMPLE_SEED = 8,                 /* the frames a thread was in at its first call event (whose
	                                  * timestamp it has): weight says how many of the innermost
	                                  * are not among them (the frame the call entered) */
};

enum sample_flags {
	SAMPLE_TRUNCATED = 1,            /* deeper than SAMPLE_FRAMES_MAX (or more shims than expected) */
	SAMPLE_NO_THREAD_STATE = 2,      /* the thread has no Python thread state (yet) */
	SAMPLE_UNREADABLE = 4,           /* a frame could not be read: the stack stops there */
	SAMPLE_THREADS_UNSEARCHED = 8,   /* its state was not among the first THREADS_WALKED_MAX */
	SAMPLE_CUT_SHORT = 16,           /* the walk ran out of tail calls: the outer frames are missing */
	SAMPLE_HOLDS_GIL = 32,           /* SAMPLE_DUMP: the thread held the GIL when the dump began */
	SAMPLE_CHANGED = 64,             /* SAMPLE_DUMP: its stack kept changing while it was read */
	SAMPLE_UNREGISTERED = 128,       /* SAMPLE_EVENT: no stack, its process was not known yet */
};

/* The GIL's state (struct _gil_runtime_state), the same in 3.7 to 3.15 default builds. */
#define GIL_LAST_HOLDER 8
#define GIL_LOCKED 16
#define GIL_SIZE 208

/* A stack, innermost frame first; only `depth` frames are sent. */
struct sample_event {
	__u64 timestamp;
	__u64 weight;                    /* SAMPLE_CPU: the clock's periods it stands for (1 but
	                                  * where the clock was late: profile.bpf.c) */
	__u64 thread_id;                 /* SAMPLE_DUMP: the thread's pthread_self() */
	__u64 address;                   /* SAMPLE_DUMP: the GIL its interpreter uses;
	                                  * SAMPLE_OFF_CPU: the system call's first argument */
	__u32 pid;
	__u32 tid;
	__u16 depth;
	__u8 kind;
	__u8 flags;
	__s32 syscall;                   /* SAMPLE_OFF_CPU: the system call it waited in */
	struct sample_frame frames[SAMPLE_FRAMES_MAX];
};

#define CODE_TEXT_MAX 256
#define LINETABLE_MAX 16384

enum code_flags {
	CODE_NAME_UNREADABLE = 1,
	CODE_FILE_UNREADABLE = 2,
	CODE_LINETABLE = 4,              /* its line table follows (perhaps cut, perhaps empty) */
};

/* A code object, announced once per process (and again should its id be forgotten): names
 * as CPython stores them (1, 2 or 4 bytes a character), and, when asked, its line table. */
struct code_event {
	__u64 code;                      /* the id frames refer to it by */
	__u64 address;
	__u32 pid;
	__s32 firstlineno;
	__u32 name_length;               /* in characters */
	__u32 file_length;
	__u32 linetable_size;            /* in bytes, whole */
	__u32 linetable_read;            /* bytes that follow the texts */
	__u16 version;                   /* the process's: major << 8 | minor */
	__u8 name_kind;                  /* bytes a character */
	__u8 file_kind;
	__u8 flags;
	__u8 pad[3];
	__u32 incarnation;               /* the process's (lifetimes.h) */
	__u32 pad2;
	__u8 name[CODE_TEXT_MAX];
	__u8 file[CODE_TEXT_MAX];
	__u8 linetable[LINETABLE_MAX];
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
	COUNTER_SHORT_WAITS = 13,   /* off-CPU: waits shorter than --min-block, not walked */
	COUNTER_SHORT_WAITS_NS = 14, /* their time */
	COUNTER_UNTRACKED_THREADS = 15, /* off-CPU: threads whose waits could not be tracked: map full */
	COUNTER_SWITCHES_UNSEEN = 16, /* off-CPU: switches of traced threads the kernel did not report */
	COUNTER_SWITCHES_UNSEEN_NS = 17, /* the time they leave in doubt */
	COUNTER_CODES_LOST = 18,    /* a call's code object could not be announced: the codes ring was full */
	COUNTER_SEEDS_PARTIAL = 19, /* threads whose frames at their first event could not all be read */
	COUNTER_NO_THREAD_STATE = 20, /* events of threads whose state could not be found */
	COUNTER_MISSED_RETURNS = 21, /* returns noticed after they happened (timed to when noticed) */
	COUNTER_RECOVERED_CALLS = 22, /* calls found in the frame chain, their entries unseen */
	COUNTER_STACK_MISMATCH = 23, /* entries whose caller is in no frame kept: the stack left as it was */
	COUNTER_INITS_UNTIMED = 24, /* CPython 3.13's specialized __init__ calls seen only returning */
	COUNTER_HOOK_FORKS_LOST = 25, /* forks of hooked processes that could not be told */
	COUNTER_WITHOUT_GIL = 26,   /* profile --gil: ticks of threads not holding the GIL, not sent */
	COUNTER_PROCESS_EVENTS_LOST = 27, /* execs, forks, births not told: the process_events ring was full */
	COUNTER_PROCESSES_UNREAD = 28, /* children of read processes not read: py_processes was full */
	COUNTER_UNREGISTERED_EVENTS = 29, /* following calls: events of processes py_processes had no room for */
	COUNTER_CHAIN_SPENT = 30,   /* following calls: events dropped, their chain of tail calls spent */
	COUNTER_MAX = 31,
};

#endif
