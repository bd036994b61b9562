/* Processes and threads come and go, and their ids are reused: what the kernel keeps about
 * one must not pass to the next with its id. Included by common.h. */
#ifndef PYBPFTRACE_LIFETIMES_H
#define PYBPFTRACE_LIFETIMES_H

/* A process's incarnation: a number given at its first event and dropped when it exits,
 * which every key holding its PID holds too, so that a PID reused by a new process starts
 * afresh (names announced again, counts apart). Two processes alive at once may share a
 * number (the counter is read after the add, and only those of one PID must differ: they
 * do, since the counter only grows); 0 where the map was full. User space reads the map to
 * learn which processes have exited (Session.sweep_exits). */
BPF_F_TABLE("hash", __u32, __u32, incarnations, INCARNATIONS_MAX, BPF_F_NO_PREALLOC);
BPF_ARRAY(incarnation_counter, __u32, 1);

static __always_inline __u32 incarnation_of(__u32 pid)
{
	__u32 *known = incarnations.lookup(&pid);
	if (known)
		return *known;
	__u32 zero = 0;
	__u32 *counter = incarnation_counter.lookup(&zero);
	if (!counter)
		return 0;
	__sync_fetch_and_add(counter, 1);
	__u32 fresh = *counter;
	if (incarnations.insert(&pid, &fresh) == 0)
		return fresh;
	known = incarnations.lookup(&pid); /* another thread of it was first */
	if (known)
		return *known;
	count(COUNTER_PROCESSES_FULL);
	return 0;
}

/* What a program keeps per thread, dropped when the thread exits (now: when). A program
 * that keeps some defines FORGETS_THREADS and forget_thread. */
#ifdef FORGETS_THREADS
static __always_inline void forget_thread(__u32 tid, __u64 now);
#else
static __always_inline void forget_thread(__u32 tid, __u64 now)
{
}
#endif

/* What the frame walker keeps (pystacks.h), in a program that walks stacks (WALKS_STACKS):
 * a thread's cached state, and a process's registration. */
#ifdef WALKS_STACKS
static __always_inline void forget_walked_thread(__u32 tid);
static __always_inline void forget_walked_process(__u32 pid);

/* A thread that runs another program (exec): its process's registration, and what is kept of
 * the thread, were the old program's. */
static __always_inline void forget_exec(__u64 id)
{
	forget_walked_process(id >> 32);
	forget_thread((__u32)id, bpf_ktime_get_ns());
	forget_walked_thread((__u32)id);
}
#endif

/* Every task's exit, in its own context: its thread state goes, and with the last thread of
 * a process (group_dead), the process's incarnation and, with --follow-forks, its entry. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	forget_thread((__u32)id, bpf_ktime_get_ns());
#ifdef WALKS_STACKS
	forget_walked_thread((__u32)id);
#endif
#ifdef EXIT_GROUP_DEAD
	if (!args->group_dead)
		return 0;
#else
	if ((__u32)id != pid) /* kernels without group_dead: the leader's exit stands for it */
		return 0;
#endif
	incarnations.delete(&pid);
#ifdef WALKS_STACKS
	forget_walked_process(pid); /* its PID may come back, another program's */
#endif
#ifdef FOLLOW_FORKS
	processes.delete(&pid);
#endif
	return 0;
}

#endif
