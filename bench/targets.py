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
    suite: str = ""  # the Debian chroot it runs in; "" for this machine

    @property
    def root(self) -> str:
        return str(MATRIX / self.suite) if self.suite else ""

    @property
    def host_python(self) -> str:
        """The interpreter's path from here: where tracers find its probes."""
        return self.root + self.python

    def missing(self) -> Optional[str]:
        """Why it cannot be benchmarked here, or None."""
        if os.path.exists(self.host_python):
            return None
        if self.suite:
            return f"{self.host_python} is missing (the {self.suite} chroot is absent: run make matrix)"
        return f"{self.python} is missing (run make setup)"

    def prepare(self) -> None:
        """Copy the workloads into the chroot."""
        if self.suite:
            shutil.copytree(WORKLOADS_DIR, self.root + CHROOT_DIR, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))

    def command(self, script: str, size: int) -> list[str]:
        directory = CHROOT_DIR if self.suite else str(WORKLOADS_DIR)
        prefix = ["chroot", self.root] if self.suite else []
        return [*prefix, self.python, f"{directory}/{script}", str(size)]


PYTHON311 = Interpreter("3.11", "/usr/bin/python3.11")
PYTHON315 = Interpreter("3.15 (sid chroot)", "/usr/bin/python3.15", "sid")
INTERPRETERS = (PYTHON311, PYTHON315)


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
