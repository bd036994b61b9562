"""Processes in another PID namespace (a container, `unshare --pid`): the kernel and the
tracer know their threads by host TIDs, CPython by the TIDs of its own namespace (the
`native_thread_id` it keeps, glibc's struct pthread before 3.11). A process's namespace is
told to the kernel (pid_namespaces, bpf/pystacks.h) so that it can match the calling thread to
its thread state; TIDs read from memory are turned back into host TIDs here (NSpid)."""

from __future__ import annotations

import os
from typing import Optional

from .target import thread_ids


def pid_namespace(pid: int) -> Optional[tuple[int, int]]:
    """(device, inode) of pid's PID namespace where it is not the tracer's; else None (also
    once it is gone)."""
    try:
        theirs = os.stat(f"/proc/{pid}/ns/pid")
        ours = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return None
    return theirs.st_dev, theirs.st_ino


def host_tids(pid: int) -> dict[int, int]:
    """TID in pid's own namespace -> host TID, of its threads now; {} where it shares the
    tracer's namespace (they are the same) or is gone."""
    if pid_namespace(pid) is None:
        return {}
    found = {}
    for tid in thread_ids(pid):
        inner = _innermost_tid(pid, str(tid))
        if inner is not None:
            found[inner] = tid
    return found


def namespace_tid(pid: int, tid: int) -> Optional[int]:
    """A thread's TID in its process's PID namespace, where that is not the tracer's; None
    otherwise (or once it is gone)."""
    if pid_namespace(pid) is None:
        return None
    return _innermost_tid(pid, str(tid))


def _innermost_tid(pid: int, task: str) -> Optional[int]:
    """The thread's TID in its innermost namespace: the last of its status's NSpid."""
    try:
        with open(f"/proc/{pid}/task/{task}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    return int(ids[-1]) if ids and ids[-1].isdigit() else None
    except OSError:
        return None
    return None


def tell_kernel(program, pid: int) -> None:
    """Put pid's PID namespace in the program's pid_namespaces (where it has that table and the
    namespace is not the tracer's)."""
    if not program.has_table("pid_namespaces"):
        return
    namespace = pid_namespace(pid)
    if namespace is None:
        return
    table = program.table("pid_namespaces")
    value = table.Leaf()
    value.dev, value.ino = namespace
    table[table.Key(pid)] = value


def by_host_tid(pid: int, by_tid: dict) -> dict:
    """A dict keyed by TIDs as pid's memory says them, keyed by host TIDs: as it is in the
    tracer's namespace; in another, the TIDs of threads no longer there left out."""
    if pid_namespace(pid) is None:
        return by_tid
    hosts = host_tids(pid)
    return {hosts[tid]: value for tid, value in by_tid.items() if tid in hosts}


def in_host_tids(pid: int, samples: list) -> list:
    """Samples the dump iterator read (their TIDs CPython's), with host TIDs: 0 for a thread
    no longer there."""
    hosts = host_tids(pid)
    if hosts:
        for sample in samples:
            sample.tid = hosts.get(sample.tid, 0)
    return samples
