"""What is traced: the interpreters (this machine's CPython 3.11, the sid chroot's 3.15), the
workloads, and a workload's process, which says `ready`, waits for a line on stdin (so that
tracers attach first), then prints the seconds its work took."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from pybpftrace.target import process_binaries, read_maps

WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"
MATRIX = Path(os.environ.get("PYBPFTRACE_MATRIX", "/var/cache/pybpftrace-tests")) / "chroots"
# Where the workloads go in a chroot: one directory per checkout, as the tests do.
CHROOT_DIR = f"/opt/pybpftrace-bench/{hashlib.sha1(str(WORKLOADS_DIR).encode()).hexdigest()[:8]}"
READY_SECONDS = 30
WORK_SECONDS = 120  # a traced workload here takes a few seconds


@dataclass(frozen=True)
class Interpreter:
    name: str  # as the table shows it
    python: str  # the interpreter's path, as its own processes see it
    suite: str = ""  # the Debian chroot it comes from; "" for this machine
    # Run the chroot's interpreter from the host's root, through the chroot's own dynamic
    # loader and libraries, instead of inside the chroot: bcc's tools cannot attach to a
    # chrooted process.
    host_root: bool = False
    workloads: Optional[tuple[str, ...]] = None  # the workloads run under it (None: all)
    # How pybpftrace follows its calls: the function probes, or the eval-frame route (with
    # --eval-hook: the eval_frame hook set while traced)
    route: str = "usdt"

    @property
    def eval_frame(self) -> bool:
        return self.route == "eval-frame"

    @property
    def root(self) -> str:
        return str(MATRIX / self.suite) if self.suite else ""

    @property
    def chrooted(self) -> bool:
        return bool(self.suite) and not self.host_root

    @property
    def host_python(self) -> str:
        """The interpreter's path from here: where tracers find its probes."""
        return self.root + self.python

    def runs(self, workload: "Workload") -> bool:
        return self.workloads is None or workload.name in self.workloads

    def missing(self) -> Optional[str]:
        """Why it cannot be benchmarked here, or None."""
        if self.suite and not os.path.isdir(self.root):
            return f"the {self.suite} chroot is absent ({self.root}: run make matrix)"
        if not os.path.exists(self.host_python):
            return f"{self.host_python} is missing" + (" (run make matrix)" if self.suite else " (run make setup)")
        if self.host_root and not self._loader():
            return f"no dynamic loader in {self.root}/usr/lib/*-linux-gnu"
        return None

    def prepare(self) -> None:
        """Copy the workloads into the chroot."""
        if self.chrooted:
            shutil.copytree(WORKLOADS_DIR, self.root + CHROOT_DIR, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))

    def command(self, script: str, size: int) -> list[str]:
        if self.chrooted:
            return ["chroot", self.root, self.python, f"{CHROOT_DIR}/{script}", str(size)]
        prefix = []
        if self.host_root:
            loader = self._loader()
            prefix = [str(loader), "--library-path", str(loader.parent)]
        return [*prefix, self.host_python, f"{WORKLOADS_DIR}/{script}", str(size)]

    def _loader(self) -> Optional[Path]:
        return next(iter(sorted(Path(self.root).glob("usr/lib/*-linux-gnu/ld-linux*.so.*"))), None)


PYTHON311 = Interpreter("3.11", "/usr/bin/python3.11")
PYTHON315 = Interpreter("3.15 (sid chroot)", "/usr/bin/python3.15", "sid")
# The same 3.15, run from the host's root where bcc's tools can trace it: for the peers'
# comparison on the call-heavy workload (the whole set again would double the run).
PYTHON315_HOST = Interpreter("3.15 (sid, host root)", "/usr/bin/python3.15", "sid", host_root=True, workloads=("fib",))
# The eval-frame route: CPython 3.13 and 3.14 (no function probes), and 3.15 beside its USDT
# route; on the call-heavy and the realistic workload.
EVAL_FRAME_WORKLOADS = ("fib", "realistic")
PYTHON313_EVAL = Interpreter("3.13 (trixie chroot, eval-frame)", "/usr/bin/python3.13", "trixie",
                             workloads=EVAL_FRAME_WORKLOADS, route="eval-frame")
PYTHON314_EVAL = Interpreter("3.14 (sid chroot, eval-frame)", "/usr/bin/python3.14", "sid",
                             workloads=EVAL_FRAME_WORKLOADS, route="eval-frame")
PYTHON315_EVAL = Interpreter("3.15 (sid chroot, eval-frame)", "/usr/bin/python3.15", "sid",
                             workloads=EVAL_FRAME_WORKLOADS, route="eval-frame")
INTERPRETERS = (PYTHON311, PYTHON315, PYTHON315_HOST, PYTHON313_EVAL, PYTHON314_EVAL, PYTHON315_EVAL)


@dataclass(frozen=True)
class Workload:
    name: str
    script: str  # in bench/workloads
    size: int  # its argument: about 0.05 s of work untraced on CPython 3.11 here
    description: str


WORKLOADS = (
    Workload("fib", "fib.py", 28, "call-heavy: recursive fib(28), nothing but Python calls"),
    Workload("realistic", "realistic.py", 1000,
             "1000 orders through json (with an object hook), re.sub with a callback, dataclasses.asdict and a small class hierarchy"),
    Workload("threads", "threads.py", 26, "two threads computing fib(26) at once"),
)


class WorkloadProcess:
    """One run of a workload: started, `ready` awaited; go() starts its work."""

    def __init__(self, interpreter: Interpreter, workload: Workload, size: int, stderr: IO):
        self.process = subprocess.Popen(
            interpreter.command(workload.script, size),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
        )
        self.pid = self.process.pid
        self._pending = b""
        self._semaphores: Optional[list[tuple[str, int]]] = None
        line = self._line(READY_SECONDS)
        if line != "ready":
            self.kill()
            raise RuntimeError(f"workload {workload.name} did not start: {line!r}")

    def semaphores(self, probes: tuple[str, ...]) -> list[int]:
        """The values of these probes' semaphores (empty if they cannot be read): how many
        tracers have raised each."""
        if not probes:
            return []
        if self._semaphores is None:
            self._semaphores = semaphore_addresses(self.pid)
        values = []
        try:
            with open(f"/proc/{self.pid}/mem", "rb") as memory:
                for probe, address in self._semaphores:
                    if probe in probes:
                        memory.seek(address)
                        values.append(int.from_bytes(memory.read(2), "little"))
        except OSError:
            return []
        return values

    def go(self) -> float:
        """Start the work; the seconds it took, as the workload timed it."""
        self.process.stdin.write(b"go\n")
        self.process.stdin.close()
        line = self._line(WORK_SECONDS)
        try:
            return float(line)
        except ValueError:
            raise RuntimeError(f"the workload printed {line!r}, not its seconds") from None

    def wait(self) -> int:
        return self.process.wait(timeout=WORK_SECONDS)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()

    def _line(self, timeout: float) -> str:
        """The next line of its stdout ("" at its end or after timeout seconds)."""
        deadline = time.monotonic() + timeout
        out = self.process.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                return ""
            chunk = os.read(out, 4096)
            if not chunk:
                return ""
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()


def semaphore_addresses(pid: int) -> list[tuple[str, int]]:
    """(probe, address) of the function__entry and function__return semaphores in the
    process's memory: each one's file offset, through the mapping of the file that covers it."""
    maps = read_maps(pid)
    addresses = []
    for binary in process_binaries(pid):
        for name in ("function__entry", "function__return"):
            probe = binary.probes.probe(name)
            for semaphore in probe.semaphores if probe else ():
                addresses += [
                    (name, mapping.start + semaphore.offset - mapping.offset)
                    for mapping in maps
                    if mapping.path == binary.shown_path
                    and mapping.offset <= semaphore.offset < mapping.offset + mapping.end - mapping.start
                ]
    return addresses
