/* The off-CPU floor: the tracepoints `profile --off-cpu` takes (system call entries, raw; their
 * exits and the scheduler's switches, plain), each with a program that does nothing. A run
 * under it costs what the kernel pays to fire those tracepoints on every system call and
 * switch of the machine, and nothing else: what --off-cpu costs above it is its own work. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
	return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
	return 0;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
	return 0;
}
