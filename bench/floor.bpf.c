/* The floor: what any tracer of these probes pays at the least. The handlers do nothing, so
 * a run under this program costs the trap into the kernel, the generated argument readers
 * and the raised semaphores (on CPython 3.11, its tracing dispatch path), and nothing else.
 * With COUNT_HITS, the counting run of the benchmark: the same, plus a per-CPU count of the
 * hits of each probe, to know exactly how many events a workload makes. With READ_CLOCK, each
 * handler reads the clock once and does nothing else: the floor of a tracer that times calls. */
#include <uapi/linux/ptrace.h>
/* pybpftrace's Session wants common.h's maps: names, the switch, counters */
#include "events.h"
#include "common.h"

enum hit { HIT_ENTRY, HIT_RETURN, HIT_MAX }; /* bench/floor.py reads them in this order */

#ifdef COUNT_HITS
BPF_PERCPU_ARRAY(hits, __u64, HIT_MAX);

static __always_inline int count_hit(__u32 which)
{
	__u64 *value = hits.lookup(&which);
	if (value)
		*value += 1;
	return 0;
}
#else
#define count_hit(which) 0
#endif

#ifdef READ_CLOCK
#define read_clock() (bpf_ktime_get_ns() == 0) /* a helper call: never optimized away */
#else
#define read_clock() 0
#endif

static __always_inline int on_entry(struct pt_regs *ctx, __u64 *args)
{
	return read_clock() + count_hit(HIT_ENTRY);
}

static __always_inline int on_return(struct pt_regs *ctx, __u64 *args)
{
	return read_clock() + count_hit(HIT_RETURN);
}

static __always_inline int on_marker(struct pt_regs *ctx, __u64 *args)
{
	return 0;
}
