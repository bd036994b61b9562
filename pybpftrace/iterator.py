"""A function of a loaded program run as a sleepable BPF task iterator over one process's
threads: the one kind of program that can read another process's memory from our side
(bpf_copy_from_user_task), so that it runs whether or not the target does.

bcc loads no such program (sleepable, attached by BTF id), so it is loaded here with the bpf(2)
system call, from the instructions bcc compiled: they already refer to the program's maps.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
from typing import Optional

from .errors import KernelSetup

BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
BPF_ITER_CREATE = 33
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_ITER = 28
BPF_F_SLEEPABLE = 1 << 4
LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class _ProgLoad(ctypes.Structure):
    """union bpf_attr for BPF_PROG_LOAD, up to attach_prog_fd."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_uint64), ("line_info_cnt", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32), ("attach_prog_fd", ctypes.c_uint32),
    ]


class _TaskIterInfo(ctypes.Structure):
    """union bpf_iter_link_info: the threads of one process (Linux 6.1+)."""

    _fields_ = [("tid", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("pid_fd", ctypes.c_uint32)]


class _LinkCreate(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32), ("iter_info", ctypes.c_uint64), ("iter_info_len", ctypes.c_uint32),
    ]


class _IterCreate(ctypes.Structure):
    _fields_ = [("link_fd", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def _bpf(command: int, attr: ctypes.Structure) -> int:
    result = _libc.syscall(BPF_SYSCALL, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _task_iterator_btf_id() -> int:
    """The kernel's BTF id of the task iterator, through libbpf (which bcc itself uses)."""
    try:
        libbpf = ctypes.CDLL("libbpf.so.1")
    except OSError:
        raise KernelSetup("libbpf.so.1 (Debian's libbpf1, which bcc depends on) is missing") from None
    find = libbpf.libbpf_find_vmlinux_btf_id
    find.argtypes = [ctypes.c_char_p, ctypes.c_int]
    found = find(b"task", BPF_TRACE_ITER)
    if found < 0:
        raise KernelSetup("this kernel has no BTF for its task iterator (/sys/kernel/btf/vmlinux)")
    return found


def _load_sleepable_iterator(address: int, size: int, function: str) -> int:
    """Load the instructions at address without a verifier log (a log too small for the
    verifier's work fails the load); on failure, again with one, for the message."""
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr = _ProgLoad(
        prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=size // 8, insns=address, license=ctypes.addressof(license),
        prog_flags=BPF_F_SLEEPABLE, prog_name=function.encode()[:15], expected_attach_type=BPF_TRACE_ITER,
        attach_btf_id=_task_iterator_btf_id(),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as error:
        attr.log_level, attr.log_size, attr.log_buf = 1, LOG_SIZE, ctypes.addressof(log)
        try:
            _bpf(BPF_PROG_LOAD, attr)
        except OSError:
            pass
        last = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise KernelSetup(
            f"the kernel refused the dump iterator ({error.strerror}{': ' + last[0] if last[0] else ''}): "
            "pybpftrace dump needs Linux 6.1 or later"
        ) from None


class IteratorProgram:
    """A sleepable task iterator program, loaded once: `function` of `program`, on a thread
    of its own from the moment it is made (the kernel takes some 0.3 s of a CPU to verify
    it: meanwhile the rest of the start, or the trace, goes on)."""

    def __init__(self, program, function: str):
        address, size = program.function_instructions(function)  # bcc's, read on the caller's thread
        self._fd: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._loading = threading.Thread(target=self._load, args=(address, size, function), daemon=True)
        self._loading.start()

    def _load(self, address: int, size: int, function: str) -> None:
        # Every signal goes to the main thread (Ctrl-C, which it handles or holds): one pending
        # here would make the kernel stop verifying and refuse the program (EAGAIN).
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._fd = _load_sleepable_iterator(address, size, function)
        except BaseException as error:  # raised where the program is first used
            self._error = error

    @property
    def fd(self) -> int:
        """Once loaded; what refused it is raised here."""
        self._loading.join()
        if self._error is not None:
            raise self._error
        return self._fd

    def close(self) -> None:
        self._loading.join()
        if self._fd is not None:
            os.close(self._fd)


class TaskIterator:
    """An iterator program, run over the threads of process `pid`."""

    def __init__(self, program: IteratorProgram, pid: int):
        info = _TaskIterInfo(pid=pid)
        link = _LinkCreate(prog_fd=program.fd, attach_type=BPF_TRACE_ITER, iter_info=ctypes.addressof(info),
                           iter_info_len=ctypes.sizeof(info))
        try:
            self._link = _bpf(BPF_LINK_CREATE, link)
        except OSError as error:
            if error.errno == errno.ESRCH:
                raise
            raise KernelSetup(f"cannot iterate over the threads of PID {pid}: {error.strerror} (Linux 6.1+)") from None

    def run(self) -> None:
        """One pass over the process's threads (the program's output goes to its maps)."""
        fd = _bpf(BPF_ITER_CREATE, _IterCreate(link_fd=self._link))
        try:
            while os.read(fd, 4096):
                pass
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self._link)
