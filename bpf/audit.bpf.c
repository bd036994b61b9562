/* pybpftrace audit: every sys.audit event of the traced processes, with its arguments as raw
 * snapshots of the objects' memory (user space decodes them per CPython version). */
#include <uapi/linux/ptrace.h>
#include "events.h"
#include "common.h"
#include "glob.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif
#define GLOBS_MAX 8
/* Objects sit on 16-byte boundaries, so a piece this size never straddles two pages. */
#define PIECE 16

struct settings {
	__u32 globs;  /* how many --event patterns are in `globs`; 0: every event */
};

/* Where a binary's objects keep their fields: constants its entry points pass after the
 * probe's two arguments (see layout_constants in pybpftrace/tools/audit.py). */
enum constant {
	BINARY = 2,        /* the binary's number, for user space */
	OB_TYPE = 3,       /* offset of ob_type in every object */
	OB_SIZE = 4,       /* of ob_size in a tuple */
	TUPLE_ITEMS = 5,   /* of the item array in a tuple; 0: layout unknown, items not read */
};

BPF_RINGBUF_OUTPUT(events, EVENTS_PAGES);
BPF_ARRAY(settings, struct settings, 1);
BPF_ARRAY(globs, struct glob, GLOBS_MAX);
/* The event name, read before deciding whether the event is wanted at all. */
struct name_buffer {
	char text[STRING_MAX];
};
BPF_PERCPU_ARRAY(scratch, struct name_buffer, 1);

/* Names by id are not used: an event name from Python (sys.audit("x")) is a temporary buffer
 * whose address is soon reused, so each event carries its name. */
static __always_inline __u8 names_match(const char *first, const char *second)
{
	return 0;
}

static __always_inline int wanted(const char *name)
{
	__u32 zero = 0;
	struct settings *config = settings.lookup(&zero);
	if (!config || !config->globs)
		return 1;
	/* One path goes on from each pattern to the next, and the index stays in a register
	 * (not the key's stack slot, where the verifier would lose its value): the verifier
	 * walks each pattern once. */
	for (__u32 index = 0; index < GLOBS_MAX; index++) {
		if (index >= config->globs)
			return 0;
		__u32 key = index;
		struct glob *glob = globs.lookup(&key);
		if (!glob)
			return 0;
		if (glob_match(glob, name))
			return 1;
	}
	return 0;
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

/* The first items of an item that is a tuple: of the args tuple's own type (PyTuple_Type;
 * subclasses are left alone, as user space decodes only exact tuples). */
static __always_inline void snapshot_nested(struct audit_event *event, int index, __u64 item,
					    __u64 tuple_type, __u64 *args)
{
	__s64 length = 0;
	if (item && read_word(item + args[OB_TYPE]) == tuple_type)
		length = read_word(item + args[OB_SIZE]);
	for (int inner = 0; inner < AUDIT_NESTED; inner++) {
		__u64 address = tuple_item(item, length, inner, args);
		event->nested[index][inner] = address;
		event->nested_read[index][inner] =
			snapshot(event->nested_bytes[index][inner], AUDIT_NESTED_BYTES, address);
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
	struct name_buffer *buffer = scratch.lookup(&zero);
	if (!buffer)
		return 0;
	char *name = buffer->text;
	__u8 flags = read_name(name, args[0], FIRST_TRUNCATED, FIRST_UNREADABLE);
	if (!wanted(name))
		return 0;
	count(COUNTER_EVENTS);
	struct audit_event *event = events.ringbuf_reserve(sizeof(struct audit_event));
	if (!event) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	event->timestamp = bpf_ktime_get_ns();
	event->pid = pid;
	event->tid = tid;
	event->binary = args[BINARY];
	event->flags = flags;
	bpf_probe_read_kernel(event->name, STRING_MAX, name);

	__u64 tuple = args[1];
	event->tuple = tuple;
	event->tuple_read = snapshot(event->tuple_bytes, AUDIT_TUPLE_BYTES, tuple);
	__s64 length = 0;
	__u64 tuple_type = 0;
	if (tuple && args[TUPLE_ITEMS]) {
		length = read_word(tuple + args[OB_SIZE]);
		tuple_type = read_word(tuple + args[OB_TYPE]);
	}
	for (int index = 0; index < AUDIT_ITEMS; index++) {
		__u64 item = tuple_item(tuple, length, index, args);
		event->items[index] = item;
		event->items_read[index] = snapshot(event->item_bytes[index], AUDIT_ITEM_BYTES, item);
		snapshot_nested(event, index, item, tuple_type, args);
	}
	events.ringbuf_submit(event, 0);
	return 0;
}
