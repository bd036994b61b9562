/* pybpftrace profile: at each tick of a CPU's clock, the Python stack of the thread running
 * there, when it belongs to a traced process; with OFF_CPU, also where its threads wait off
 * a CPU, and for how long. User space counts the stacks. */
#include <uapi/linux/ptrace.h>
#include "events.h"
#define FORGETS_THREADS
#define TRACKS_FORKS /* sampler.h's track_fork */
#include "common.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 1024
#endif

#ifdef OFF_CPU
struct profile_settings {
	__u64 min_block;                 /* ns: shorter waits are counted, not walked */
	__u64 tick_ns;                   /* the clock's period; 0: no clock */
};

/* The last switch a CPU was seen to make. */
struct cpu_switch {
	__u64 at;
	__u32 next;                      /* the task it brought in */
	__u32 seen;
};

BPF_ARRAY(profile_settings, struct profile_settings, 1);
BPF_PERCPU_ARRAY(cpu_switches, struct cpu_switch, 1);
BPF_PERCPU_ARRAY(last_ticks, __u64, 1); /* when each CPU's clock last ticked */

/* The clock's periods a tick stands for. Its timer can fire late or skip periods (a loaded
 * host; a VM whose timers lag: 11% of a busy thread's ticks, under qemu's TCG), and a tick
 * counts once however late it comes. Where the thread has run on this CPU since its last
 * tick, no switch seen in between, the periods that went by were all its own. */
static __always_inline __u64 tick_periods(void)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *last_tick = last_ticks.lookup(&zero);
	struct cpu_switch *last_switch = cpu_switches.lookup(&zero);
	struct profile_settings *settings = profile_settings.lookup(&zero);
	if (!last_tick || !last_switch || !settings || !settings->tick_ns)
		return 1;
	__u64 previous = *last_tick;
	*last_tick = now;
	if (!previous || !last_switch->seen || last_switch->next != (__u32)bpf_get_current_pid_tgid())
		return 1;
	__u64 since = last_switch->at > previous ? last_switch->at : previous;
	__u64 periods = (now - since + settings->tick_ns / 2) / settings->tick_ns;
	return periods > 1 ? periods : 1;
}
#define TICK_PERIODS() tick_periods()
#endif

#include "sampler.h"

#ifdef OFF_CPU
/* The stacks of threads still waiting when tracing stops: read as dump reads them. */
#include "dump.h"

/* Where the traced threads wait. A thread leaving its CPU is noted at the switch (in its
 * context); the time it was away is known when another switch brings it back (in another
 * thread's context, where its stack cannot be read), and its stack is read when it next runs
 * in its own: when the system call it waited in returns. A thread taken off its CPU while
 * runnable (preempted) has its stack read as it leaves, and its time sent when it is back. */
struct off_cpu {
	__u64 since;                     /* when it left its CPU; 0 while on one */
	__u64 waited;                    /* ns off its CPU, blocked, not yet sent */
	__u64 short_waits;               /* ns of its waits shorter than min_block, not walked */
	__u64 address;                   /* the first argument of the system call it is in */
	__s32 syscall;                   /* the system call it is in; -1: none */
	__u32 pid;
	__u8 preempted;                  /* it left its CPU runnable */
	__u8 pad[7];
};

BPF_HASH(off_cpu, __u32, struct off_cpu, OFF_CPU_MAX);
BPF_PROG_ARRAY(walk_tracepoint_programs, 1); /* [0]: walk_on_tracepoint */

/* The states a task leaves its CPU in, as the switch tracepoint reports them (its format's
 * print flags): none, or only the preemption bit above them, while runnable; X or Z when it
 * is dead (its last switch). */
#define REPORTED_STATES 0xff
#define REPORTED_DEAD (0x10 | 0x20)

/* A record with no frames: a time to add to a thread's stack sent before. */
static __always_inline void send_frameless(__u32 pid, __u32 tid, __u8 kind, __u64 weight)
{
	__u32 zero = 0;
	struct walk *walk = walks.lookup(&zero);
	if (!walk) /* no walk is under way on this CPU: programs do not nest */
		return;
	walk_start(walk, pid, tid);
	walk->sample.timestamp = bpf_ktime_get_ns();
	walk->sample.kind = kind;
	walk->sample.weight = weight;
	walk->sample.syscall = -1;
	walk->sample.address = 0;
	send_sample(&walk->sample);
}

static __always_inline void count_by(__u32 counter, __u64 amount)
{
	__u64 *value = counters.lookup(&counter);
	if (value)
		*value += amount;
}

/* The calling thread's wait state, made the first time a traced thread is seen. */
static __always_inline struct off_cpu *own_off_cpu(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct off_cpu *state = off_cpu.lookup(&tid);
	if (state || !tracer_enabled() || !process_traced(pid) || !py_processes.lookup(&pid))
		return state;
	struct off_cpu blank = {.syscall = -1, .pid = pid};
	if (off_cpu.insert(&tid, &blank)) {
		count(COUNTER_UNTRACKED_THREADS);
		return NULL;
	}
	return off_cpu.lookup(&tid);
}

/* A thread back on a CPU (at `now`): a preemption's time goes to the stack read as it left,
 * a blocked wait's is added up until its system call returns. */
static __always_inline void came_back(struct off_cpu *state, __u32 tid, __u64 now)
{
	__u64 away = now > state->since ? now - state->since : 0;
	state->since = 0;
	if (state->preempted)
		send_frameless(state->pid, tid, SAMPLE_RESUMED, away);
	else
		state->waited += away;
}

/* At every system call of every thread on the machine: a raw tracepoint, which skips the
 * record a plain one formats first. Its arguments: the registers at the call (the
 * architecture's pt_regs, an ABI) and the call's number. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	struct off_cpu *state = own_off_cpu();
	if (!state)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	state->syscall = ctx->args[1];
	state->address = 0;
	bpf_probe_read_kernel(&state->address, sizeof(state->address), &PT_REGS_PARM1(regs));
	return 0;
}

/* A plain tracepoint, not a raw one: it walks, in the per-CPU walk buffer the clock's ticks
 * walk in too, and the kernel runs a tick's program only when no program of a plain
 * tracepoint is running on that CPU, whereas raw tracepoints' programs can be interrupted
 * by it (measured: walks overwritten mid-way, waits lost). */
TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct off_cpu *state = off_cpu.lookup(&tid);
	if (!state)
		return 0;
	if (state->since) /* back on a CPU by a switch not reported (check_switch): back by now */
		came_back(state, tid, bpf_ktime_get_ns());
	if (!state->waited)
		return 0;
	__u64 waited = state->waited;
	__s32 syscall = state->syscall;
	__u64 address = state->address;
	state->waited = 0;
	state->syscall = -1;
	struct profile_settings *settings = profile_settings.lookup(&zero);
	if (settings && waited < settings->min_block) {
		count(COUNTER_SHORT_WAITS);
		count_by(COUNTER_SHORT_WAITS_NS, waited);
		state->short_waits += waited;
		return 0;
	}
	struct walk *walk = begin_walk(SAMPLE_OFF_CPU, waited);
	if (!walk)
		return 0;
	count(COUNTER_EVENTS);
	walk->sample.syscall = syscall;
	walk->sample.address = address;
	walk_tracepoint_programs.call(args, 0);
	return 0;
}

/* The kernel reports no switch at all in the context of some tasks (on the machine this was
 * written on, two threads of PID 1, a sandbox's agent, where not even a raw tracepoint
 * fires), and the switch to the next task is one of them: a thread coming back after such a
 * task is not seen coming back. Each CPU's last switch tells: the task leaving must be the
 * one it brought in. A traced thread that came back unseen is back since then at the latest;
 * when its system call returns first, that return says when (above). One that left unseen is
 * not timed until it is next seen leaving. Either way the time in doubt is counted. */
static __always_inline void check_switch(__u32 prev, __u32 next, __u64 now)
{
	__u32 zero = 0;
	struct cpu_switch *last = cpu_switches.lookup(&zero);
	if (!last)
		return;
	if (last->seen && last->next != prev) {
		struct off_cpu *arrived = off_cpu.lookup(&prev);
		int unseen = 0;
		if (arrived && arrived->since) {
			came_back(arrived, prev, last->at);
			unseen++;
		}
		__u32 gone = last->next;
		struct off_cpu *left = off_cpu.lookup(&gone);
		if (left && !left->since)
			unseen++;
		if (unseen) {
			count_by(COUNTER_SWITCHES_UNSEEN, unseen);
			count_by(COUNTER_SWITCHES_UNSEEN_NS, unseen * (now - last->at));
		}
	}
	last->at = now;
	last->next = next;
	last->seen = 1;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
	if (!tracer_enabled())
		return 0; /* what is away when tracing stops stays as it is, for user space to read */
	__u64 now = bpf_ktime_get_ns();
	__u32 prev = args->prev_pid, next = args->next_pid;
	check_switch(prev, next, now);
	struct off_cpu *back = off_cpu.lookup(&next);
	if (back && back->since)
		came_back(back, next, now);
	if (args->prev_state & REPORTED_DEAD) { /* its exit (lifetimes.h) sent what it had */
		off_cpu.delete(&prev);
		return 0;
	}
	struct off_cpu *leaving = own_off_cpu();
	if (!leaving)
		return 0;
	leaving->since = now;
	leaving->preempted = !(args->prev_state & REPORTED_STATES);
	if (leaving->preempted && begin_walk(SAMPLE_PREEMPTED, 0)) {
		count(COUNTER_EVENTS);
		walk_tracepoint_programs.call(args, 0);
	}
	return 0;
}

int walk_on_tracepoint(void *ctx)
{
	int done;
	struct walk *walk = walk_on(&done);
	if (!done)
		walk_tracepoint_programs.call(ctx, 0);
	if (walk)
		walk_ended(walk, done);
	return 0;
}
#endif

/* An exiting thread's short waits are sent, and its wait state goes (lifetimes.h). */
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
#ifdef OFF_CPU
	struct off_cpu *state = off_cpu.lookup(&tid);
	if (state && state->short_waits && tracer_enabled())
		send_frameless(state->pid, tid, SAMPLE_SHORT_WAITS, state->short_waits);
	off_cpu.delete(&tid);
#endif
}
