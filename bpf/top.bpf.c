/* pybpftrace top: where the time goes, from Python stacks sampled at a clock (sampler.h); and,
 * where CPython has the function__entry probe, how many times each function is entered,
 * counted in the kernel; user space reads the counts each interval. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

#include "sampler.h"

/* Counts (common.h's, key: file, function, entry line) go to the generation user space names:
 * it switches generations, then reads and deletes the old one's counts. */
struct top_settings {
	__u32 generation;
	__u32 retract; /* CPython 3.15: remember each thread's last entry, in case it was a creation */
};

BPF_ARRAY(top_settings, struct top_settings, 1);
/* Not preallocated; an entry goes when its thread exits. A thread beyond LAST_ENTRY_MAX live
 * ones (counted) has its creations' entries counted as calls. */
BPF_F_TABLE("hash", __u32, struct count_key, last_entry, LAST_ENTRY_MAX, BPF_F_NO_PREALLOC);

/* The thread's last entry, written in place: an update of the LRU map per entry would
 * allocate an element each time, and cost more than all the rest of this program. */
static __always_inline void remember(__u32 tid, struct count_key *key)
{
	struct count_key *last = last_entry.lookup(&tid);
	if (last)
		*last = *key;
	else if (last_entry.update(&tid, key) < 0)
		count(COUNTER_THREADS_FULL);
}

static __always_inline void forget_thread(__u32 tid, __u64 now)
{
	last_entry.delete(&tid);
}

/* function__entry(filename, funcname, lineno) */
static __always_inline int on_function_entry(struct pt_regs *ctx, __u64 *args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id, zero = 0;
	struct top_settings *settings = top_settings.lookup(&zero);
	if (!settings || !tracer_enabled() || !process_traced(pid))
		return 0;
	count(COUNTER_EVENTS);
	struct name_ids ids = function_ids(ctx, args);
	struct count_key key = {.first = ids.file, .second = ids.function, .pid = pid, .line = (__s32)args[2],
				.generation = settings->generation, .incarnation = incarnation_of(pid)};
	if (settings->retract)
		remember(tid, &key);
	count_under(&key, 1, args);
	return 0;
}

/* Entry of _Py_MakeCoro (CPython 3.15): the thread's last entry created a generator. Take it
 * back in the current generation (its own may have been collected meanwhile): user space sums
 * counts over generations as signed numbers. */
static __always_inline int on_generator_created(struct pt_regs *ctx, __u64 *args)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct count_key *last = last_entry.lookup(&tid);
	struct top_settings *settings = top_settings.lookup(&zero);
	if (!last || !settings || !last->pid)
		return 0;
	struct count_key key = *last;
	last->pid = 0; /* taken back: not again */
	key.generation = settings->generation;
	count_under(&key, (__u64)-1, NULL);
	return 0;
}
