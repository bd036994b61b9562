"""Helpers for the tests: the traced CPython, real targets, the real tracer, and what the
kernel left behind in a target."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, NamedTuple
from pathlib import Path

from pybpftrace.probes import read_probes
from pybpftrace.target import read_maps, thread_file, thread_ids, thread_stat

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TIMEOUT = float(os.environ.get("PYBPFTRACE_TEST_TIMEOUT", 60))  # s, each wait (longer in a slow VM)
# The version matrix's chroots (scripts/matrix.sh builds them), and where scripts go in them.
MATRIX = Path(os.environ.get("PYBPFTRACE_MATRIX", "/var/cache/pybpftrace-tests")) / "chroots"
# One directory per checkout, so that two checkouts testing at once keep to their own scripts.
CHROOT_SCRIPTS = f"/opt/pybpftrace-tests/{hashlib.sha1(str(SCRIPTS).encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Interpreter:
    """A --with-dtrace CPython: this machine's, or one in a chroot of the matrix (a process
    there is the container case: traced from outside through /proc/PID/root)."""

    version: tuple[int, int]
    python: str  # as the interpreter's own processes see it
    suite: str = ""  # the chroot's Debian suite; "" for this machine

    @property
    def root(self) -> str:
        return str(MATRIX / self.suite) if self.suite else ""

    @property
    def host_python(self) -> str:
        return self.root + self.python

    def script(self, name: str) -> str:
        """Where a test script is, as the interpreter sees it."""
        return f"{CHROOT_SCRIPTS}/{name}" if self.suite else script(name)

    def argv(self) -> list[str]:
        """The command that starts it: in its chroot, for the matrix's."""
        if self.suite:
            _copy_scripts(self.root)
        return ["chroot", self.root, self.python] if self.suite else [self.python]

    def command(self, name: str, *args: str) -> list[str]:
        return [*self.argv(), self.script(name), *args]

    def inside(self, path) -> str:
        """A path of this machine as the interpreter sees it (under its chroot's root)."""
        path = str(path)
        if self.suite:
            assert path.startswith(self.root + "/"), f"{path} is outside {self.root}"
            return path[len(self.root):]
        return path

    def prepare(self) -> None:
        """Fail unless it is there; copy the test scripts into its chroot."""
        assert os.path.exists(self.host_python), f"{self.host_python} is missing: run make matrix"
        if self.suite:
            _copy_scripts(self.root)

    def __str__(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


@functools.cache
def _copy_scripts(root: str) -> None:
    shutil.copytree(SCRIPTS, root + CHROOT_SCRIPTS, dirs_exist_ok=True)


def _debian_pythons() -> list[tuple[tuple[int, int], str]]:
    """This machine's Debian CPythons (/usr/bin/python3.N), newest first."""
    found = []
    for path in Path("/usr/bin").glob("python3.*"):
        match = re.fullmatch(r"python3\.(\d+)", path.name)
        if match:
            found.append(((3, int(match.group(1))), str(path)))
    return sorted(found, reverse=True)


def _host_interpreter() -> Interpreter:
    """The CPython with function probes the tests trace by default: this machine's own
    (Debian 12's python3.11), or where it has none (Debian 13's python3.13 has no function
    probes) the matrix's bookworm 3.11, run in its chroot. PYBPFTRACE_TEST_HOST=matrix takes
    the matrix's even where this machine has its own."""
    if os.environ.get("PYBPFTRACE_TEST_HOST") != "matrix":
        for version, python in _debian_pythons():
            if "function__entry" in {probe.name for probe in probes_of(python).probes}:
                return Interpreter(version, python)
    return Interpreter((3, 11), "/usr/bin/python3.11", "bookworm")


@contextlib.contextmanager
def copied(interpreter: Interpreter, directory: Path, name: str, make=shutil.copy2) -> Iterator[Interpreter]:
    """A copy of the interpreter's binary, made by make(source, destination), that runs as the
    original does: beside it in its chroot (where its standard library is found from where it
    runs), else in directory. A chroot's copy is removed when done (directory's goes with it)."""
    if not interpreter.suite:
        make(interpreter.host_python, str(directory / name))
        yield Interpreter(interpreter.version, str(directory / name))
        return
    inside = f"/usr/bin/{name}-{os.getpid()}"
    make(interpreter.host_python, interpreter.root + inside)
    try:
        yield Interpreter(interpreter.version, inside, interpreter.suite)
    finally:
        os.unlink(interpreter.root + inside)


@functools.cache
def probes_of(python: str):
    """The interpreter's probes, read once: checks made while a short trace runs must be quick,
    also where parsing the ELF file takes seconds (a VM under TCG)."""
    return read_probes(python)


HOST = _host_interpreter()
# Where the default interpreter runs on this machine itself (not in a chroot): what tests that
# put it on PATH, embed it or build against its headers need.
HOST_IS_OWN = not HOST.suite
NOT_OWN = ("this machine has no --with-dtrace CPython with function probes of its own (Debian 13's "
           "python3.13 has none; Debian 12's python3.11 does, and make setup installs it there)")
WITH_FUNCTION_PROBES = [
    Interpreter((3, 9), "/usr/bin/python3.9", "bullseye"),
    HOST,
    Interpreter((3, 15), "/usr/bin/python3.15", "sid"),
]
WITHOUT_FUNCTION_PROBES = [
    Interpreter((3, 13), "/usr/bin/python3.13", "trixie"),
    Interpreter((3, 14), "/usr/bin/python3.14", "sid"),
]
ALL_INTERPRETERS = sorted(WITH_FUNCTION_PROBES + WITHOUT_FUNCTION_PROBES, key=lambda i: i.version)
# pyenv's builds (shared libpython, no probes), where this machine has them.
PYENV_MINORS = [(3, minor) for minor in range(7, 14)]
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def pyenv_interpreter(version: tuple[int, int]) -> Interpreter | None:
    """The newest pyenv build of a minor version, or None."""
    found = sorted(PYENV_ROOT.glob(f"versions/{version[0]}.{version[1]}.*/bin/python{version[0]}.{version[1]}"),
                   key=lambda path: int(path.parts[-3].split(".")[2]) if path.parts[-3].split(".")[2].isdigit() else -1)
    return Interpreter(version, str(found[-1])) if found else None


@dataclass(frozen=True)
class CallRoute:
    """An interpreter and the route its calls are followed by: the function probes (usdt) or
    the eval-frame route, with the eval_frame hook where the version needs one (3.11+)."""

    interpreter: Interpreter
    route: str

    @property
    def hooked(self) -> bool:
        return self.route == "eval-frame" and self.interpreter.version >= (3, 11)

    def options(self, launched: bool = False) -> list[str]:
        """The tracer's options for this route: by PID, the hook must be allowed."""
        return ["--route", self.route, *(["--eval-hook"] if self.hooked and not launched else [])]

    def __str__(self) -> str:
        where = "" if self.interpreter.suite or self.interpreter == HOST else "pyenv-"
        return f"{where}{self.interpreter}-{self.route}"


EVAL_FRAME = "eval-frame"
# Every interpreter of the matrix by every route it has (3.13 and 3.14: the eval-frame route only)
CALL_ROUTES = [
    *(CallRoute(i, route) for i in WITH_FUNCTION_PROBES for route in ("usdt", EVAL_FRAME)),
    *(CallRoute(i, EVAL_FRAME) for i in WITHOUT_FUNCTION_PROBES),
]
# pyenv's 3.12 and 3.13 (no probes at all): the eval-frame route, where this machine has them
PYENV_ROUTES = [(3, 12), (3, 13)]


def pybpftrace_command(*args):
    return [sys.executable, "-m", "pybpftrace", *map(str, args)]


def script(name: str) -> str:
    return str(SCRIPTS / name)


def line_of(name: str, marker: str) -> int:
    """The line holding `# marker` in a test script."""
    for number, text in enumerate(Path(script(name)).read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no '# {marker}' in {name}")


def label(name: str, function: str, marker: str) -> str:
    """A frame of a test script as folded stacks name it: `function (path:first line)`."""
    return f"{function} ({HOST.script(name)}:{line_of(name, marker)})"


def folded_lines(text: str) -> dict[str, int]:
    """Folded stacks: each stack and its weight."""
    weights = {}
    for line in text.splitlines():
        stack, weight = line.rsplit(" ", 1)
        weights[stack] = int(weight)
    return weights


_TIME_AND_TID = re.compile(r"^\s*\d+\.\d{6}\s+(\d+)  ")


def calls(output: str) -> list[str]:
    """Stack lines without their time and TID columns."""
    return [_TIME_AND_TID.sub("", line) for line in output.splitlines() if _TIME_AND_TID.match(line)]


def calls_by_thread(output: str) -> dict[int, list[str]]:
    threads: dict[int, list[str]] = {}
    for line in output.splitlines():
        match = _TIME_AND_TID.match(line)
        if match:
            threads.setdefault(int(match.group(1)), []).append(line[match.end():])
    return threads


class Target:
    """A test script that waits for a line on stdin before its work, so the tracer can attach
    first; under the default CPython with function probes (HOST) unless told otherwise."""

    def __init__(self, name: str, *args: str, interpreter: Interpreter = HOST, preexec_fn=None):
        self.process = subprocess.Popen(
            interpreter.command(name, *args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn,
        )
        self.pid = self.process.pid
        self.path = interpreter.script(name)
        wait_for_interpreter(self.pid, interpreter.host_python)

    def go(self) -> None:
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = TIMEOUT) -> tuple[bytes, bytes]:
        out, err = self.process.communicate(timeout=timeout)
        return out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exception) -> None:
        self.kill()


def idents_when_ready(target: Target) -> dict[str, int]:
    """The thread idents a script writes as a JSON line before `ready`."""
    idents = json.loads(target.process.stdout.readline())
    assert target.process.stdout.readline() == b"ready\n"
    return idents


def wait_for_interpreter(pid: int, python: str) -> None:
    """Until the process has exec'd the interpreter and mapped it."""
    real = os.path.realpath(python)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if any(mapping.path == real for mapping in read_maps(pid)):
            return
        time.sleep(0.01)
    raise AssertionError(f"PID {pid} never mapped {python}")


def wait_reading_stdin(pid: int) -> None:
    """Until the process blocks reading its stdin (read(0, ...)): a script waiting for the
    tracer, its interpreter set up, `-X` options and all."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        with open(f"/proc/{pid}/syscall") as syscall:
            fields = syscall.read().split()
        if fields[:2] == ["0", "0x0"]:  # x86-64's read, on fd 0
            return
        assert time.monotonic() < deadline, f"PID {pid} never read its stdin: {fields}"
        time.sleep(0.01)


class Tracer:
    """pybpftrace running in the background, its output read as it comes by threads of its
    own, as a terminal or a file would take it (a pipe nobody reads would block the tracer once
    full)."""

    def __init__(self, *args, stdin=subprocess.DEVNULL, env=None):
        # faulthandler: a tracer that hangs is ended by SIGABRT, which then shows where it was
        env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER="1")
        self.process = subprocess.Popen(
            pybpftrace_command(*args), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self._output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self._output]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        pipe = getattr(self.process, name)
        while chunk := os.read(pipe.fileno(), 1 << 16):
            self._output[name].append(chunk)

    @property
    def stdout(self) -> bytes:
        return b"".join(self._output["stdout"])

    @property
    def stderr(self) -> bytes:
        return b"".join(self._output["stderr"])

    def wait_attached(self) -> None:
        """Until the tracer announces it is tracing."""
        self._wait_for("stderr", b"pybpftrace: tracing", "tracer never attached")

    def wait_said(self, *texts: str) -> None:
        """Until the tracer has said one of `texts` on stderr (that it found a Python, say)."""
        self._wait_for("stderr", tuple(text.encode() for text in texts), f"tracer never said {' or '.join(texts)!r}")

    def wait_output(self, text: str) -> None:
        """Until the tracer has written `text` (while its target still runs, say)."""
        self._wait_for("stdout", text.encode(), f"tracer never wrote {text!r}")

    def _wait_for(self, stream: str, texts: bytes | tuple[bytes, ...], failure: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        texts = texts if isinstance(texts, tuple) else (texts,)
        while not any(text in getattr(self, stream) for text in texts):
            assert self.process.poll() is None, f"tracer exited: {self.stderr.decode()}"
            assert time.monotonic() < deadline, f"{failure}\n{self.stuck()}"
            time.sleep(0.01)

    def stuck(self) -> str:
        """Where a tracer that does not go on is: what it said, and each thread's state and
        kernel stack (for the failure to say why, where it cannot be seen again)."""
        return f"its stderr so far:\n{self.stderr.decode(errors='replace')}\n{threads_state(self.process.pid)}"

    def signal(self, number: int = signal.SIGINT) -> None:
        self.process.send_signal(number)

    def pause(self) -> None:
        """Stop the tracer (SIGSTOP) and wait until it is: what happens now it cannot see as it
        happens; SIGCONT lets it go on."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + TIMEOUT
        while open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, "the tracer never stopped"
            time.sleep(0.01)

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            state = threads_state(self.process.pid)
            self.signal(signal.SIGABRT)  # faulthandler (set in __init__) writes each thread's Python stack
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for reader in self._readers:
                reader.join(10)
            raise AssertionError(f"tracer {self.process.pid} did not end within {timeout:.0f} s of its signal; "
                                 f"its stderr, ended by SIGABRT:\n{self.stderr.decode(errors='replace')}\n"
                                 f"before that:\n{state}") from None
        for reader in self._readers:
            reader.join(timeout)
        return self.process.returncode, self.stdout.decode(), self.stderr.decode()


def threads_state(pid: int) -> str:
    """Each thread of a process: its name, state, wait channel and kernel stack."""
    tids = sorted(thread_ids(pid))
    lines = [_memory_line(pid)] if tids else [f"PID {pid}: gone"]
    for tid in tids:
        comm, wchan, stack = (thread_file(pid, tid, name) for name in ("comm", "wchan", "stack"))
        state = (thread_stat(pid, tid) or ["?"])[0]
        lines.append(f"thread {tid} ({(comm or '?').strip()}) state {state} in {wchan or '-'}:")
        lines.extend(f"    {frame}" for frame in (stack or "(kernel stack unreadable)").splitlines())
    return "\n".join(lines)


def _memory_line(pid: int) -> str:
    """The process's resident memory and the machine's available memory (a machine short of
    memory re-reads its programs' pages: everything slows, nothing fails)."""
    found = {}
    for path, keys in ((f"/proc/{pid}/status", ("VmRSS",)), ("/proc/meminfo", ("MemAvailable", "MemTotal"))):
        try:
            with open(path) as file:
                for line in file:
                    key, _, value = line.partition(":")
                    if key in keys:
                        found[key] = value.strip()
        except OSError:
            pass
    return ", ".join(f"{key} {value}" for key, value in found.items())


PID = object()  # in a tracer's command line: the target's PID


class TracedRun(NamedTuple):
    code: int  # the tracer's exit code
    stdout: str  # the tracer's
    stderr: str
    target_output: bytes
    target_errors: bytes
    path: str  # the script, as the target sees it


def trace_held(target: Target, *arguments, releases: int = 1, env=None) -> TracedRun:
    """Attach the tracer (its command line, PID standing for the target's) to a held target,
    let it go (`releases` lines on its stdin) and run to its end; what both said."""
    try:
        tracer = Tracer(*(target.pid if argument is PID else argument for argument in arguments), env=env)
        tracer.wait_attached()
        for _ in range(releases):
            target.go()
        target_output, target_errors = target.finish()
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
    return TracedRun(code, stdout, stderr, target_output, target_errors, target.path)


def run_tracer(*args, input: bytes | None = None, timeout: float = TIMEOUT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        pybpftrace_command(*args), input=input, capture_output=True, timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL, env=env,
    )


def folded_weights(text: str) -> Counter:
    """Folded output as {stack: weight} (a summary line among it left out)."""
    weights: Counter = Counter()
    for line in text.splitlines():
        if line and not line.startswith("pybpftrace:"):
            stack, weight = line.rsplit(" ", 1)
            weights[stack] += int(weight)
    return weights


def weight_of(weights: dict[str, int], frame: str) -> int:
    """The total weight of the stacks ending in frame."""
    return sum(weight for stack, weight in weights.items() if stack.rsplit(";", 1)[-1] == frame)


def json_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def summary_line(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if re.match(r"pybpftrace: \d+ \w+, \d+ lost", line)]
    return line


def load_bias(pid: int, path: str) -> int:
    """Where a non-PIE file sits is where it was linked; a PIE is moved by its first mapping."""
    probes = probes_of(path)
    if not probes.pie:
        return 0
    real = os.path.realpath(path)
    return min(mapping.start - mapping.offset for mapping in read_maps(pid) if mapping.path == real)


def semaphores(pid: int, python: str = HOST.host_python) -> dict[str, int]:
    """Every USDT semaphore of the interpreter, read from the live process's memory."""
    probes = probes_of(python)
    bias = load_bias(pid, python)
    values = {}
    with open(f"/proc/{pid}/mem", "rb") as memory:
        for probe in probes.probes:
            for semaphore in probe.semaphores:
                memory.seek(semaphore.address + bias)
                values[probe.name] = int.from_bytes(memory.read(2), "little")
    return values


def probe_bytes(pid: int, python: str = HOST.host_python) -> dict[str, tuple[int, int]]:
    """(byte in the process, byte in the file) at every probe location: a uprobe shows as
    int3 (0xcc) in the process."""
    probes = probes_of(python)
    bias = load_bias(pid, python)
    data = open(python, "rb").read()
    found = {}
    with open(f"/proc/{pid}/mem", "rb") as memory:
        for probe in probes.probes:
            for location in probe.locations:
                memory.seek(location.address + bias)
                found[f"{probe.name}@{location.address:#x}"] = (memory.read(1)[0], data[location.offset])
    return found


def assert_nothing_left(pid: int, python: str = HOST.host_python) -> None:
    """The tracer left the target as it found it: semaphores at 0, no breakpoint in place."""
    # the kernel removes uprobes of closed perf events at once, but not in no time: a fixed 10 s
    # assumed a machine's speed (two TCG guests on a loaded host failed four tests ending here)
    deadline = time.monotonic() + TIMEOUT
    while True:
        values = semaphores(pid, python)
        bytes_ = probe_bytes(pid, python)
        if not any(values.values()) and all(a == b for a, b in bytes_.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: semaphores {values}, probe bytes {bytes_}")
        time.sleep(0.05)


def dynamic_symbols(path: str) -> dict[str, int]:
    """The binary's defined dynamic symbols as binutils' nm reads them."""
    output = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    return {name: int(address, 16) for address, _, name in (line.split() for line in output.splitlines())}


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` (--shard, the K-th of N parts of the suite, counted from 1) as (K, N)."""
    match = re.fullmatch(r"([1-9][0-9]*)/([1-9][0-9]*)", text)
    if not match or int(match[1]) > int(match[2]):
        raise ValueError(f"--shard takes K/N with 1 <= K <= N (the K-th of N parts), not {text!r}")
    return int(match[1]), int(match[2])


def shard_items(items: list, shard: tuple[int, int]) -> tuple[list, list]:
    """(kept, left to the other shards): every N-th test from the K-th on, so that each part
    takes its share of every file, slow and quick, and the N parts take each test once."""
    index, count = shard
    kept = [item for position, item in enumerate(items) if position % count == index - 1]
    left = [item for position, item in enumerate(items) if position % count != index - 1]
    return kept, left
