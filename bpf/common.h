/* What every program shares: the switch that turns it on, counters, and names by id. */
#ifndef PYBPFTRACE_COMMON_H
#define PYBPFTRACE_COMMON_H

#include "events.h"
#include "hash.h"

#ifndef ENOMEM
#define ENOMEM 12 /* a map entry the kernel could not allocate (maps not preallocated) */
#endif
#ifndef EEXIST
#define EEXIST 17
#endif

#ifndef NAMES_PAGES
#define NAMES_PAGES 64
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

/* Take back a count (this CPU's share may go below 0: user space sums them as signed). */
static __always_inline void uncount(__u32 counter)
{
	__u64 *value = counters.lookup(&counter);
	if (value)
		*value -= 1;
}

/* Forks, seen in the parent (task_newtask) by whichever of these a program has: FOLLOW_FORKS
 * (the processes --follow-forks attaches to), HOOK_FORKS (children that inherit an eval_frame
 * hook) and TRACKS_FORKS (the sampler's: a child of a process whose stacks are read, defined
 * in sampler.h as track_fork). One tracepoint program for all: bcc names it after the
 * tracepoint. */
#if defined(FOLLOW_FORKS) || defined(HOOK_FORKS) || defined(TRACKS_FORKS)
#define SEES_FORKS
#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif
#endif
#ifdef TRACKS_FORKS
static __always_inline void track_fork(__u32 parent, __u32 child);
#endif

#ifdef FOLLOW_FORKS
/* The traced processes, and the children they fork: those enter as PROCESS_ATTACHING and
 * user space, told on the `forks` ring buffer, attaches to them. Until all their uprobes are
 * in place their events are ignored, so no entry is counted without its return's probe. */
BPF_HASH(processes, __u32, __u8, 65536);
BPF_RINGBUF_OUTPUT(forks, 1);

static __always_inline void follow_fork(__u32 parent, __u32 child)
{
	if (!processes.lookup(&parent))
		return;
	__u8 state = PROCESS_ATTACHING;
	processes.update(&child, &state);
	struct fork_event *event = forks.ringbuf_reserve(sizeof(struct fork_event));
	if (!event)
		return;
	event->parent = parent;
	event->child = child;
	forks.ringbuf_submit(event, 0);
}
#endif

#ifdef HOOK_FORKS
#ifndef HOOKED_MAX
#define HOOKED_MAX 65536
#endif
/* The processes whose eval_frame hook a trace holds (user space adds each before setting it),
 * and the children they fork, which inherit it with the memory: each fork is told on
 * `hook_forks`, so that user space sets the child's back too. Not switched off with tracing:
 * until the hooks are set back, every fork counts. */
BPF_HASH(hooked, __u32, __u8, HOOKED_MAX);
BPF_RINGBUF_OUTPUT(hook_forks, 1);

static __always_inline void hook_fork(__u32 parent, __u32 child)
{
	if (!hooked.lookup(&parent))
		return;
	__u8 yes = 1;
	if (hooked.update(&child, &yes))
		count(COUNTER_HOOK_FORKS_LOST);
	struct fork_event *event = hook_forks.ringbuf_reserve(sizeof(struct fork_event));
	if (!event) {
		count(COUNTER_HOOK_FORKS_LOST);
		return;
	}
	event->parent = parent;
	event->child = child;
	hook_forks.ringbuf_submit(event, 0);
}
#endif

#ifdef SEES_FORKS
TRACEPOINT_PROBE(task, task_newtask)
{
	if (args->clone_flags & CLONE_THREAD)
		return 0;
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 child = args->pid;
#ifdef FOLLOW_FORKS
	follow_fork(parent, child);
#endif
#ifdef HOOK_FORKS
	hook_fork(parent, child);
#endif
#ifdef TRACKS_FORKS
	track_fork(parent, child);
#endif
	return 0;
}
#endif

#include "lifetimes.h"

#ifdef LEAVES_OUT_TRACERS
/* The other pybpftrace tracers (tracers.py), left out by one that finds its Pythons itself. */
BPF_HASH(tracers, __u32, __u8, TRACERS_MAX);
#endif

/* Whether this process's events count: never the tracer's own (it may run the very binary
 * traced with --binary or --all), nor, where it finds its Pythons, another tracer's; with
 * --follow-forks, only once fully attached. */
static __always_inline int process_traced(__u32 pid)
{
	if (pid == TRACER_PID)
		return 0;
#ifdef LEAVES_OUT_TRACERS
	if (tracers.lookup(&pid))
		return 0;
#endif
#ifdef FOLLOW_FORKS
	__u8 *state = processes.lookup(&pid);
	return state && *state == PROCESS_TRACED;
#else
	return 1;
#endif
}

/* Names by id. CPython passes strings as pointers into str objects: (file, function) for
 * calls. A pair is read once per process incarnation, sent on the `names` ring buffer, and
 * referred to by its two ids after that (name_id below: an address alone is no id, since a
 * freed str's address is soon another string's). */
struct names_key {
	__u64 first;
	__u64 second;
	__u32 pid;
	__u32 incarnation;
};

/* A name's id: its address, mixed with what tells the string there from any other that
 * may later sit at the same address. CPython hands out the characters of a compact ASCII
 * str, which sit at a fixed offset (data_offset, per version) in the str object; its header
 * there is checked to be a str's (its type, PyUnicode_Type, at type_delta from the probe's
 * own address, so that a PIE or a libpython needs no load bias) and to end at this length,
 * and its cached hash (siphash of the characters) and length then tell strings apart. Other
 * strings (non-ASCII ones, whose UTF-8 copy lives apart; ASCII ones not hashed yet, as file
 * names often are before 3.12; any when data_offset is 0: a layout unknown) are told by
 * their characters themselves, read each time. */
#define STR_COMPACT_ASCII 0x60 /* the state bits compact and ascii (3.9 to 3.15 alike) */
#define STR_KIND_MASK 0x1c     /* and kind: 1, one byte per character */
#define STR_KIND_1BYTE 0x04

struct str_header {
	__u64 type;
	__s64 length;
	__s64 hash;
	__u32 state;
	__u32 pad;
};

struct name_text {
	char text[STRING_MAX];
};

BPF_PERCPU_ARRAY(name_scratch, struct name_text, 1);


/* The id of the characters at address, read as a NUL-terminated string (its first 255 bytes). */
static __always_inline __u64 text_id(__u64 address)
{
	__u32 zero = 0;
	struct name_text *scratch = name_scratch.lookup(&zero);
	if (!scratch)
		return address;
	char *text = scratch->text;
	long length = bpf_probe_read_user_str(text, STRING_MAX, (void *)address);
	if (length <= 0)
		return address; /* unreadable: announced as such, and read again next time */
	__u64 id = mix(address, length);
	for (int word = 0; word < STRING_MAX / 8; word++) {
		if (word * 8 >= length)
			break;
		__u64 value = *(__u64 *)(text + word * 8);
		long left = length - word * 8;
		if (left < 8) /* past the NUL: whatever the buffer held before */
			value &= (1ULL << (left * 8)) - 1;
		id = mix(id, value);
	}
	return id;
}

static __always_inline __u64 name_id(struct pt_regs *ctx, __u64 address, __u64 data_offset, __u64 type_delta)
{
	if (!address) /* CPython passes NULL for names it cannot encode as UTF-8 */
		return 0;
	struct str_header header = {};
	if (data_offset && !bpf_probe_read_user(&header, sizeof(header), (void *)(address - data_offset + 8)) &&
	    header.type == PT_REGS_IP(ctx) + type_delta &&
	    (header.state & (STR_COMPACT_ASCII | STR_KIND_MASK)) == (STR_COMPACT_ASCII | STR_KIND_1BYTE) &&
	    header.hash != -1 && header.length >= 0) {
		char end = 1;
		bpf_probe_read_user(&end, 1, (void *)(address + header.length));
		if (!end)
			return mix(mix(address, header.hash), header.length) | 1; /* odd: apart from text ids */
	}
	return text_id(address) & ~1ULL;
}

BPF_RINGBUF_OUTPUT(names, NAMES_PAGES);
/* Value: the pair's match flags (see NAMES_MATCH). An entry evicted costs only its pair's
 * announcement again; those of exited incarnations are never looked up again. */
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

/* Make sure user space knows the pair of ids first and second, whose texts are at
 * first_text and second_text (0: none, the second id is only part of the key); return its
 * cached flags, or -1 when it could not be announced (counted: the names ring was full). */
static __always_inline int announce_names(__u32 pid, __u32 incarnation, __u64 first, __u64 second,
					  __u64 first_text, __u64 second_text)
{
	struct names_key key = {.first = first, .second = second, .pid = pid, .incarnation = incarnation};
	__u8 *known = known_names.lookup(&key);
	if (known)
		return *known;

	struct names_event *event = names.ringbuf_reserve(sizeof(struct names_event));
	if (!event) {
		count(COUNTER_NAMES_LOST);
		return -1;
	}
	event->first = first;
	event->second = second;
	event->pid = pid;
	event->incarnation = incarnation;
	event->flags = read_name(event->first_text, first_text, FIRST_TRUNCATED, FIRST_UNREADABLE) |
		       read_name(event->second_text, second_text, SECOND_TRUNCATED, SECOND_UNREADABLE);
	__u8 flags = NAMES_MATCH(event->first_text, event->second_text);
	int unreadable = event->flags & (FIRST_UNREADABLE | SECOND_UNREADABLE);
	names.ringbuf_submit(event, 0);
	if (!unreadable) /* else read it again next time */
		known_names.update(&key, &flags);
	return flags;
}

/* Where a probe's handler finds its binary's str layout (ProgramSpec.names_layout): after
 * the probe's arguments that a function probe's handlers read, (file, function, line). */
enum names_layout {
	STR_DATA = 3,  /* where a compact ASCII str's characters start; 0: unknown */
	STR_TYPE = 4,  /* PyUnicode_Type's address, from the probe's own */
};

/* A function probe's (file, function) as name ids. */
struct name_ids {
	__u64 file;
	__u64 function;
};

static __always_inline struct name_ids function_ids(struct pt_regs *ctx, __u64 *args)
{
	struct name_ids ids = {
		.file = name_id(ctx, args[0], args[STR_DATA], args[STR_TYPE]),
		.function = name_id(ctx, args[1], args[STR_DATA], args[STR_TYPE]),
	};
	return ids;
}

/* A function probe's names (args: its file and function addresses, ids: their ids); -1 when
 * they could not be announced. */
static __always_inline int intern_names(__u32 pid, __u32 incarnation, struct name_ids *ids, __u64 *args)
{
	return announce_names(pid, incarnation, ids->file, ids->function, args[0], args[1]);
}

/* The string at text, keyed with the object that owns it (say, a type and its tp_name): the
 * owner comes with an empty second text. */
static __always_inline int intern_owned_name(__u32 pid, __u32 incarnation, __u64 text_id, __u64 text, __u64 owner)
{
	return announce_names(pid, incarnation, text_id, owner, text, 0);
}

/* Counts kept in the kernel, by process, name pair and line (the programs that aggregate:
 * lines, top); `generation` is the program's own use. Per CPU, so that threads counting the
 * same function on two CPUs do not fight over one cache line; user space adds them up. */
struct count_key {
	__u64 first;
	__u64 second;
	__u32 pid;
	__s32 line;
	__u32 generation;
	__u32 incarnation;
};

/* Preallocated: an entry per CPU made in the kernel's atomic context can fail when a burst of
 * new keys (a process starting) uses up the per-CPU pages it has ready. */
BPF_PERCPU_HASH(counts, struct count_key, __u64, COUNTS_MAX);

/* Add to the count under key (this CPU's share; a share below 0 wraps, and user space reads
 * the sum as signed). A new key's names are announced first (args: their addresses); when
 * they cannot be, the count is kept all the same and the names are tried again at the next
 * new key of theirs. */
static __always_inline void count_under(struct count_key *key, __u64 amount, __u64 *args)
{
	__u64 *counted = counts.lookup(key);
	if (counted) {
		*counted += amount;
		return;
	}
	if (args)
		announce_names(key->pid, key->incarnation, key->first, key->second, args[0], args[1]);
	if (counts.insert(key, &amount) < 0) { /* another CPU was first, or the map is full */
		counted = counts.lookup(key);
		if (counted)
			*counted += amount;
		else
			count(COUNTER_COUNTS_FULL);
	}
}

#endif
