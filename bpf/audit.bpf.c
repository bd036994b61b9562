/* pybpftrace audit: every sys.audit event of the traced processes, with its arguments as raw
 * snapshots of the objects' memory (user space decodes them per CPython version). */
#include <uapi/linux/ptrace.h>
#include "events.h"
#ifdef STACKS
#define TRACKS_FORKS /* sampler.h's track_fork (event_stacks.h includes it) */
#endif
#include "common.h"
#define GLOBS_MAX 8 /* glob.h matches this many patterns (user space: tools/audit.py) */
#include "glob.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif
/* Objects sit on 16-byte boundaries, so a piece this size never straddles two pages. */
#define PIECE 16

struct settings {
	__u32 globs;  /* how many --event patterns are in `globs`; 0: every event */
};

/* Where a binary's objects keep their fields: constants its entry points pass after the
 * probe's two arguments (Binaries.constants in pybpftrace/tools/audit.py). */
enum constant {
	BINARY = 2,        /* the binary's number, for user space */
	OB_TYPE = 3,       /* offset of ob_type in every object */
	OB_SIZE = 4,       /* of ob_size in a tuple */
	TUPLE_ITEMS = 5,   /* of the item array in a tuple; 0: layout unknown, items not read */
	TP_NAME = 6,       /* of tp_name in a type */
	AUDIT_STR_DATA = 7, /* the names layout (ProgramSpec.names_layout): see common.h's name_id */
	AUDIT_STR_TYPE = 8,
};

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
#include "event_stacks.h"
BPF_ARRAY(settings, struct settings, 1);
BPF_ARRAY(globs, struct glob, GLOBS_MAX);
/* The event's name and objects, found before its record is reserved. */
struct work {
	char name[STRING_MAX];
	struct audit_objects objects;
};
BPF_PERCPU_ARRAY(scratch, struct work, 1);

/* Names by id serve type names only: an event name from Python (sys.audit("x")) is a
 * temporary buffer whose address is soon reused, so each event carries its name. */

static __always_inline int wanted(const char *name)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	if (!config || !config->globs)
		return 1;
	const struct glob *patterns[GLOBS_MAX];
#pragma unroll
	for (__u32 index = 0; index < GLOBS_MAX; index++) {
		__u32 key = index;
		patterns[index] = globs.lookup(&key);
		if (!patterns[index])
			return 0;
	}
	return globs_match(patterns, name);
}

static __always_inline __u64 read_word(__u64 address)
{
	__u64 value = 0;
	bpf_probe_read_user(&value, sizeof(value), (void *)address);
	return value;
}

/* Address of a tuple's index-th item, or 0 past its end. */
static __always_inline __u64 tuple_item(__u64 tuple, __s64 length, int index, __u64 *args)
{
	if (index >= length)
		return 0;
	return read_word(tuple + args[TUPLE_ITEMS] + index * sizeof(__u64));
}

static __always_inline __u64 type_of(__u64 object, __u64 *args)
{
	return object && args[TUPLE_ITEMS] ? read_word(object + args[OB_TYPE]) : 0;
}

/* The id of a type's name (a heap type's is its name str's characters), made known to user
 * space first (it drains names before the events that refer to them), keyed with the type. */
static __always_inline __u64 type_name(struct pt_regs *ctx, __u32 pid, __u32 incarnation, __u64 type, __u64 *args)
{
	__u64 name = type ? read_word(type + args[TP_NAME]) : 0;
	if (!name)
		return 0;
	__u64 id = name_id(ctx, name, args[AUDIT_STR_DATA], args[AUDIT_STR_TYPE]);
	intern_owned_name(pid, incarnation, id, name, type);
	return id;
}

/* The args tuple, its first items, and the first items of those that are tuples of its own
 * type (PyTuple_Type: subclasses are left alone, as user space decodes only exact tuples).
 * Every slot is written: the per-CPU buffer holds the previous event's. */
static __always_inline void find_objects(struct pt_regs *ctx, struct audit_objects *found, __u32 pid, __u32 incarnation,
					 __u64 tuple, __u64 *args)
{
	__u64 tuple_type = type_of(tuple, args);
	__s64 length = tuple_type ? read_word(tuple + args[OB_SIZE]) : 0;
	found->tuple = tuple;
	found->tuple_type_name = type_name(ctx, pid, incarnation, tuple_type, args);
	for (int index = 0; index < AUDIT_ITEMS; index++) {
		__u64 item = tuple_item(tuple, length, index, args);
		__u64 type = type_of(item, args);
		found->items[index] = item;
		found->item_type_names[index] = type_name(ctx, pid, incarnation, type, args);
		__s64 inner_length = type && type == tuple_type ? read_word(item + args[OB_SIZE]) : 0;
		for (int inner = 0; inner < AUDIT_NESTED; inner++) {
			__u64 address = tuple_item(item, inner_length, inner, args);
			found->nested[index][inner] = address;
			found->nested_type_names[index][inner] = type_name(ctx, pid, incarnation, type_of(address, args), args);
		}
	}
}

/* Copy the first `size` bytes of an object; the bytes copied. An object near the end of a
 * mapping cannot be read whole, so then it is read piece by piece up to the first page that
 * cannot be read. */
static __always_inline __u16 snapshot(__u8 *to, __u32 size, __u64 address)
{
	if (!address)
		return 0;
	if (bpf_probe_read_user(to, size, (void *)address) == 0)
		return size;
	__u16 done = 0;
	for (__u32 offset = 0; offset < size; offset += PIECE) {
		if (bpf_probe_read_user(to + offset, PIECE, (void *)(address + offset)))
			break;
		done += PIECE;
	}
	return done;
}

static __always_inline void snapshot_objects(struct audit_event *event, const struct audit_objects *found)
{
	bpf_probe_read_kernel(&event->objects, sizeof(event->objects), found);
	event->tuple_read = snapshot(event->tuple_bytes, AUDIT_TUPLE_BYTES, found->tuple);
	for (int index = 0; index < AUDIT_ITEMS; index++) {
		event->items_read[index] =
			snapshot(event->item_bytes[index], AUDIT_ITEM_BYTES, found->items[index]);
		for (int inner = 0; inner < AUDIT_NESTED; inner++)
			event->nested_read[index][inner] = snapshot(
				event->nested_bytes[index][inner], AUDIT_NESTED_BYTES, found->nested[index][inner]);
	}
}

/* audit(event, args): args[0] the event's name, args[1] its argument tuple, then the binary's
 * constants (enum constant). */
static __always_inline int on_audit(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	if (!tracer_enabled() || !process_traced(pid))
		return 0;
	__u32 zero = 0;
	struct work *work = scratch.lookup(&zero);
	if (!work)
		return 0;
	__u8 flags = read_name(work->name, args[0], FIRST_TRUNCATED, FIRST_UNREADABLE);
	if (!wanted(work->name))
		return 0;
	count(COUNTER_EVENTS);
	__u32 incarnation = incarnation_of(pid);
	find_objects(ctx, &work->objects, pid, incarnation, args[1], args);
	struct audit_event *event = reserve_event(sizeof(struct audit_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	event->timestamp = bpf_ktime_get_ns();
	event->pid = pid;
	event->tid = tid;
	event->incarnation = incarnation;
	event->binary = args[BINARY];
	event->flags = flags;
	bpf_probe_read_kernel(event->name, STRING_MAX, work->name);
	snapshot_objects(event, &work->objects);
	submit_event(ctx, event, event->timestamp, 1); /* with --stacks, after the stack that raised it */
	return 0;
}
