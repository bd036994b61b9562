"""Uprobes through the uprobe PMU: perf_event_open(2) with the probe's file offset and its
semaphore's file offset (`ref_ctr_offset`).

With ref_ctr_offset the kernel raises the USDT semaphore in every process the uprobe is
installed in and lowers it when the uprobe goes, so the tracer never writes into the
target's memory, and a killed tracer leaves nothing raised: its perf event file descriptors
close with it, and the kernel removes the uprobes and lowers the semaphores.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .events import PROCESS_TRACED

if TYPE_CHECKING:
    from .program import LoadedProgram, Placement
    from .target import PythonBinary

UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")

PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_SAMPLE_RAW = 1 << 10

_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}


class AttachError(OSError):
    """The kernel refused a uprobe."""


class _PerfEventAttr(ctypes.Structure):
    """The head of struct perf_event_attr, up to config2 (PERF_ATTR_SIZE_VER1)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),  # path of the probed file
        ("config2", ctypes.c_uint64),  # offset of the probe in the file
    ]


_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class UprobePmu:
    type: int
    retprobe_bit: int
    ref_ctr_shift: int

    @classmethod
    def read(cls) -> "UprobePmu":
        """The PMU's numbers, from sysfs: its type and where its config fields sit."""
        try:
            pmu_type = int((UPROBE_PMU / "type").read_text())
            retprobe = (UPROBE_PMU / "format/retprobe").read_text().strip()
            ref_ctr = (UPROBE_PMU / "format/ref_ctr_offset").read_text().strip()
        except (OSError, ValueError) as error:
            raise AttachError(
                errno.ENOTSUP,
                f"this kernel has no uprobe PMU with ref_ctr_offset ({UPROBE_PMU}): "
                "Linux 4.20 or later is needed",
            ) from error
        return cls(pmu_type, _config_shift(retprobe), _config_shift(ref_ctr))


def _config_shift(format_text: str) -> int:
    """'config:32-63' -> 32."""
    return int(format_text.split(":")[1].split("-")[0])


def perf_event_open_uprobe(
    pmu: UprobePmu, path: str, offset: int, pid: int, ref_ctr_offset: int = 0, cpu: int = -1, returns: bool = False
) -> int:
    attr = _PerfEventAttr()
    attr.type = pmu.type
    attr.size = ctypes.sizeof(_PerfEventAttr)
    attr.config = ref_ctr_offset << pmu.ref_ctr_shift | int(returns) << pmu.retprobe_bit
    attr.sample_period = 1
    attr.sample_type = PERF_SAMPLE_RAW
    attr.wakeup_events = 1
    encoded = ctypes.create_string_buffer(os.fsencode(path))
    attr.config1 = ctypes.addressof(encoded)
    attr.config2 = offset
    number = _PERF_EVENT_OPEN[platform.machine()]
    fd = _libc.syscall(number, ctypes.byref(attr), pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        code = ctypes.get_errno()
        raise AttachError(code, f"uprobe at {path}+{offset:#x}: {os.strerror(code)}")
    return fd


class Uprobes:
    """The uprobes of one trace; closing them removes them and lowers their semaphores."""

    def __init__(self) -> None:
        self._pmu = UprobePmu.read()
        self._fds: list[int] = []

    def attach(
        self,
        program_fd: int | None,
        path: str,
        offset: int,
        pid: int,
        ref_ctr_offset: int = 0,
        returns: bool = False,
    ) -> None:
        """A uprobe at path+offset in process pid (-1: every process running the file, now
        and later), running program_fd when hit (returns: a uretprobe, when the function
        entered there returns); without a program it only holds the semaphore raised. A
        system-wide perf event must name a CPU, but its program runs for hits on every CPU:
        one event, on CPU 0, is enough."""
        cpu = 0 if pid == -1 else -1
        fd = perf_event_open_uprobe(self._pmu, path, offset, pid, ref_ctr_offset, cpu, returns)
        self._fds.append(fd)
        try:
            if program_fd is not None:
                fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, program_fd)
            fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except OSError as error:
            raise AttachError(error.errno, f"uprobe at {path}+{offset:#x}: {error.strerror}")

    def __len__(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


class Attachment:
    """A loaded program's entry points placed in the traced processes (its placements in each
    process's binaries), and what some versions need besides: on CPython 3.11 the line
    semaphore raised when function entries are probed (gh-98894)."""

    def __init__(self, program: "LoadedProgram", follow_forks: bool):
        self._program = program
        self._follow_forks = follow_forks
        self._uprobes = Uprobes()

    def attach(self, pid: int, binaries: list["PythonBinary"], path: Callable[[str], str] = lambda path: path,
               which: Callable[["Placement"], bool] = lambda placement: True) -> None:
        """The program's uprobes in one process (path: where that process's files are; which:
        the placements to attach now, the others by place() later)."""
        self.place(pid, binaries, path, which)
        for binary in binaries:
            self._raise_line_semaphore(pid, binary, path(binary.path))
        if self._follow_forks:
            processes = self._program.table("processes")
            processes[processes.Key(pid)] = processes.Leaf(PROCESS_TRACED)

    def place(self, pid: int, binaries: list["PythonBinary"], path: Callable[[str], str] = lambda path: path,
              which: Callable[["Placement"], bool] = lambda placement: True) -> None:
        for placement in self._program.placements:
            if placement.binary in binaries and which(placement):
                semaphore = placement.location.semaphore
                self._uprobes.attach(
                    self._program.entry_fd(placement.entry),
                    path(placement.binary.path),
                    placement.location.offset,
                    pid,
                    semaphore.offset if semaphore else 0,
                    placement.returns,
                )

    def follow(self, parent: int, child: int, binaries: list["PythonBinary"]) -> bool:
        """Attach to a child forked by a traced process: its memory map is its parent's, and
        so are its files, named through its own /proc entry."""
        try:
            self.attach(child, binaries, lambda p: p.replace(f"/proc/{parent}/", f"/proc/{child}/"))
        except AttachError:
            return False  # it exited, or exec'd something else, before we got there
        return True

    def _raise_line_semaphore(self, pid: int, binary: "PythonBinary", path: str) -> None:
        """CPython 3.11 runs function__entry only while the line semaphore is up (gh-98894).
        A uprobe carrying that semaphore, placed at the entry of a function a healthy
        interpreter never calls, makes the kernel raise it, and lower it whatever happens to
        the tracer, without a trap per line. With no such function found, the line probe
        itself carries it, at the cost of a trap per line."""
        line = binary.probes.probe("line")
        entries = any(p.probe == "function__entry" and p.binary == binary for p in self._program.placements)
        if not entries or not binary.quirks.entry_needs_line_semaphore or line is None:
            return
        offset = binary.never_called_offset
        for semaphore in line.semaphores:
            place = offset if offset is not None else line.locations[0].offset
            self._uprobes.attach(None, path, place, pid, semaphore.offset)

    def __len__(self) -> int:
        return len(self._uprobes)

    def close(self) -> None:
        self._uprobes.close()
