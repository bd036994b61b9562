"""One measurement: a workload run untraced or beside one tracer, and what the tracer cost:
the workload's own seconds, the tracer's time from launch to tracing, its CPU time and peak
RSS (from wait4), and what it says it saw."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

from .targets import Interpreter, Workload, WorkloadProcess
from .tracers import COUNTING, REPO, Seen, Tracer

ATTACH_SECONDS = 60  # a tracer that has not said it is tracing by then has failed
POLL_SECONDS = 0.005  # how often its output is looked at while it attaches
DRAIN_SECONDS = 20  # for a tracer that stops itself to finish once the target has exited (a second or two, healthy)
MEMORY_LIMIT_MIB = 1024  # a tracer past this is killed: the machine is shared, and its figures are moot
WATCH_SECONDS = 0.1  # how often a tracer's memory is looked at while it finishes
PEER_GRACE_SECONDS = 0.5  # for one that does not, before it is sent SIGINT
STOP_SECONDS = 30  # after SIGINT, before SIGKILL


@dataclass
class Run:
    """One run's figures; error says why there are none."""

    seconds: Optional[float] = None  # the workload's work, timed by itself
    attach_seconds: Optional[float] = None  # tracer launched -> says it is tracing
    cpu_seconds: Optional[float] = None  # the tracer's user + system time
    peak_rss_mib: Optional[float] = None  # the tracer's peak resident set
    events: Optional[int] = None  # what the tracer says it handled or saw
    lost: Optional[int] = None
    entries: Optional[int] = None
    ended_first: Optional[bool] = None  # the tracer ended before the work did (top --once, say)
    error: Optional[str] = None

    def to_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class TracerProcess:
    process: subprocess.Popen
    stdout: Path
    stderr: Path
    launched: float

    def head(self, limit: int = 1 << 16) -> str:
        """The start of its stdout and stderr: enough to see it attach, or why it did not."""
        return "".join(_head(path, limit) for path in (self.stdout, self.stderr))

    def lines(self) -> Iterator[str]:
        """Every line of its stdout then stderr, one at a time (uflow's can be large)."""
        for path in (self.stdout, self.stderr):
            with open(path, errors="replace") as output:
                yield from output


def _head(path: Path, limit: int) -> str:
    with open(path, errors="replace") as output:
        return output.read(limit)


def measure(interpreter: Interpreter, workload: Workload, tracer: Optional[Tracer], size: Optional[int] = None) -> Run:
    """Run the workload (at its size, or `size`) untraced (tracer None) or beside the tracer."""
    with tempfile.TemporaryDirectory(prefix="pybpftrace-bench-") as scratch:
        directory = Path(scratch)
        try:
            with open(directory / "workload.err", "wb") as errors:
                target = WorkloadProcess(interpreter, workload, workload.size if size is None else size, errors)
        except RuntimeError as error:
            return Run(error=str(error))
        running: Optional[TracerProcess] = None
        try:
            if tracer is not None:
                before = target.semaphores(tracer.semaphores)
                running = _launch(tracer, target.pid, interpreter, directory)
                attach_seconds, why = _wait_attached(tracer, running, target, before)
                if why:
                    return Run(error=why)
            seconds = target.go()
            ended_first = running is not None and running.process.poll() is not None
            target.wait()
            if running is None:
                return Run(seconds=seconds)
            run = _stop(tracer, running)
            run.seconds, run.attach_seconds = seconds, attach_seconds
            run.ended_first = ended_first or None
            return run
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            return Run(error=str(error))
        finally:
            target.kill()
            if running is not None and running.process.returncode is None:
                _kill(running)


def _launch(tracer: Tracer, pid: int, interpreter: Interpreter, directory: Path) -> TracerProcess:
    environment = dict(os.environ, PYTHONUNBUFFERED="1") if tracer.unbuffered else None
    argv = tracer.command(pid, interpreter, str(directory / "trace.out"))
    stdout, stderr = directory / "tracer.out", directory / "tracer.err"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        launched = time.monotonic()
        # Only the floor runs from the checkout (python -m bench.floor); pybpftrace runs from
        # elsewhere, so that $PYBPFTRACE's own checkout is the one imported.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   cwd=REPO if tracer.kind == "floor" else "/",
                                   env=environment, start_new_session=True)
    return TracerProcess(process, stdout, stderr, launched)


def _wait_attached(
    tracer: Tracer, running: TracerProcess, target: WorkloadProcess, before: list[int]
) -> tuple[float, Optional[str]]:
    """(Seconds from launch until it says it is tracing, None), or (0, why that never
    came). bpftrace says `Attaching` before it attaches: for it, the target's semaphores
    must also have risen above their values before (another tracer of the same binary,
    tracing all its processes, may hold them up too)."""
    deadline = running.launched + ATTACH_SECONDS
    while time.monotonic() < deadline:
        now = time.monotonic()
        output = running.head()
        if tracer.attached.search(output) and _raised(before, target.semaphores(tracer.semaphores)):
            return now - running.launched, None
        if running.process.poll() is not None:
            return 0.0, "did not attach: " + _last_error(output)
        time.sleep(POLL_SECONDS)
    return 0.0, f"did not attach within {ATTACH_SECONDS} s"


def _raised(before: list[int], now: list[int]) -> bool:
    return len(now) == len(before) and all(value > old for value, old in zip(now, before))


def _last_error(output: str) -> str:
    """The line of a failed tracer's output that says most about why."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "rlimit_memlock" in line.lower():
            continue  # bpftrace's warning on every start here, whatever else happens
        if any(word in line.lower() for word in ("error", "failed", "exception", "invalid", "pybpftrace:")):
            return line
    return lines[-1] if lines else "no output"


def _stop(tracer: Tracer, running: TracerProcess) -> Run:
    """Let the tracer end (or end it with SIGINT), reap it with its rusage, read its output."""
    grace = DRAIN_SECONDS if tracer.stops_itself else PEER_GRACE_SECONDS
    try:
        usage = _reap(running.process, grace)
        if usage is None:
            os.killpg(running.process.pid, signal.SIGINT)
            if tracer.stops_itself:
                _reap(running.process, STOP_SECONDS)
                return Run(error=f"still running {DRAIN_SECONDS} s after the target exited: stopped with SIGINT")
            usage = _reap(running.process, STOP_SECONDS)
    except MemoryError as error:
        _kill(running)
        return Run(error=str(error))
    if usage is None:
        _kill(running)
        return Run(error=f"did not stop within {STOP_SECONDS} s of SIGINT")
    if tracer.stops_itself and running.process.returncode != 0:
        return Run(error=f"exited with {running.process.returncode}: {_last_error(running.head())}")
    seen: Seen = tracer.read(running.lines())
    return Run(
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        events=seen.events, lost=seen.lost, entries=seen.entries,
    )


def _reap(process: subprocess.Popen, timeout: float):
    """The process's rusage once it has exited within timeout seconds, else None; raises
    MemoryError if its resident set grows past MEMORY_LIMIT_MIB meanwhile."""
    pidfd = os.pidfd_open(process.pid)
    deadline = time.monotonic() + timeout
    try:
        while not select.select([pidfd], [], [], min(WATCH_SECONDS, max(0.0, deadline - time.monotonic())))[0]:
            rss = _rss_mib(process.pid)
            if rss > MEMORY_LIMIT_MIB:
                raise MemoryError(f"killed after the target exited: its RSS passed {MEMORY_LIMIT_MIB} MiB ({rss:.0f} MiB)")
            if time.monotonic() >= deadline:
                return None
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage


def _rss_mib(pid: int) -> float:
    """Resident set of a running process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _kill(running: TracerProcess) -> None:
    try:
        os.killpg(running.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    running.process.wait()


def count_events(interpreter: Interpreter, workload: Workload) -> tuple[Optional[dict], Optional[str]]:
    """Probe hits, exactly, from two counting runs of the floor: the whole run, and one with
    its work skipped (size 0); their difference is the work's. ({...}, None) or (None, why)."""
    whole = measure(interpreter, workload, COUNTING)
    idle = measure(interpreter, workload, COUNTING, size=0)
    for run in (whole, idle):
        if run.error or run.events is None:
            return None, f"counting run failed: {run.error or 'no counts'}"
    return {
        "entries": whole.entries, "returns": whole.events - whole.entries,  # attach to exit, as tracers see them
        "work_events": whole.events - idle.events,  # inside the timed work
    }, None
