"""What to trace: running processes (seen through /proc, so processes in containers work) or a
command to launch, and the ELF files in them that hold CPython and its probes."""

from __future__ import annotations

import _signal
import os
import shlex
import shutil
from dataclasses import dataclass, field, replace
from typing import Callable, Generic, Optional, TypeVar

from elftools.elf.dynamic import DynamicSection

from .errors import CommandNotFound, NoProbes, NotFound, NotPermitted, NotPython
from .tools import STACK_COMMANDS
from .probes import (
    ELF_READ_ERRORS,
    ElfProbes,
    NotAnElf,
    defined_symbols,
    file_offset,
    has_probe_notes,
    load_segments,
    open_elf,
    parsed_elf,
    read_elf_probes,
)
from .versions import (
    PROBE_HISTORY,
    Quirks,
    Version,
    quirks,
    INTERPRETER_SYMBOLS,
    VERSION_SYMBOL,
    detect_version,
    format_version,
    is_interpreter,
    stacks_readable,
)

T = TypeVar("T")
ELF_MAGIC = b"\x7fELF"
# Entry of a function a healthy interpreter never runs: a uprobe there raises a semaphore
# without ever trapping.
NEVER_CALLED = ("Py_FatalError", "_Py_FatalErrorFunc")
# Functions whose entries some versions need probed (see versions.Quirks), and the function
# every Python call goes through once interp->eval_frame is set (the eval-frame route).
MARKERS = ("_Py_MakeCoro",)
EVAL_FRAME = "_PyEval_EvalFrameDefault"
# Its getter's first instruction reads interp->eval_frame: where the field is.
EVAL_FRAME_GETTER = "_PyInterpreterState_GetEvalFrameFunc"
ENDBR64 = b"\xf3\x0f\x1e\xfa"  # CET's landing pad: a uprobe on it is single-stepped, 10 us a hit
_MOV_FROM_RDI = {b"\x48\x8b\x87": 4, b"\x48\x8b\x47": 1}  # mov rax, [rdi + disp32 or disp8]
CODE_SYMBOLS = NEVER_CALLED + MARKERS + (EVAL_FRAME, EVAL_FRAME_GETTER)


@dataclass(frozen=True)
class Place:
    """A place in a binary's code to put a uprobe: its file offset and its link-time address,
    and the link-time address of the function it is the entry of (before its endbr64)."""

    offset: int
    address: int
    function: int = 0


@dataclass(frozen=True)
class PythonBinary:
    """An ELF file (executable or libpython) holding CPython or its probes."""

    path: str  # where the tracer opens it, and the path given to the kernel for uprobes
    shown_path: str  # the path shown: as /proc/PID/maps gives it (a chrooted file under its root), or as named
    probes: ElfProbes
    version: Optional[Version]
    interpreter: bool
    places: dict[str, Place]  # function entries, by name (CODE_SYMBOLS)
    eval_frame_field: Optional[int]  # where PyInterpreterState keeps eval_frame (x86-64)

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def never_called_offset(self) -> Optional[int]:
        place = next((self.places[name] for name in NEVER_CALLED if name in self.places), None)
        return place.offset if place else None

    @property
    def quirks(self) -> Quirks:
        return quirks(self.version)

    def has(self, names: tuple[str, ...]) -> bool:
        return all(self.probes.probe(name) for name in names)

    def describe(self) -> str:
        return f"{format_version(self.version)} at {self.shown_path}"


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class _Facts:
    """What an ELF file holds for pybpftrace, whatever path it is opened through."""

    probes: ElfProbes
    version: Optional[Version]
    interpreter: bool
    places: dict[str, Place]
    eval_frame_field: Optional[int]


class ByFile(Generic[T]):
    """What was read of files, by file (device, inode, mtime), not by path: every process maps
    the same files, each through a path of its own (/proc/PID/map_files/...), and reading an
    ELF file takes a while. Bounded: emptied once it holds `limit` files."""

    def __init__(self, limit: int):
        self._limit = limit
        self._read: dict[tuple, T] = {}

    def get(self, identity: tuple, read: Callable[[], T]) -> T:
        if identity not in self._read:
            if len(self._read) >= self._limit:
                self._read.clear()
            self._read[identity] = read()
        return self._read[identity]

    def __len__(self) -> int:
        return len(self._read)


FACTS_CACHED = 4096
_FACTS: ByFile[Optional[_Facts]] = ByFile(FACTS_CACHED)  # --all reads every process's files


def _inspect(path: str, identity: tuple) -> Optional[_Facts]:
    return _FACTS.get(identity, lambda: _read_facts(path))


def _read_facts(path: str) -> Optional[_Facts]:
    with open(path, "rb") as raw:
        try:
            elf = open_elf(raw)
            stream = elf.stream  # bounded by the file (a crafted offset reads nothing)
            probes = read_elf_probes(elf, path)
            symbols = defined_symbols(elf, INTERPRETER_SYMBOLS + (VERSION_SYMBOL,) + CODE_SYMBOLS)
            interpreter = is_interpreter(symbols)
            if not probes.probes and not probes.damaged_notes and not interpreter:
                return None
            version = detect_version(elf, symbols) if interpreter else None
            segments = load_segments(elf)
            places, field = {}, None
            if elf.get_machine_arch() == "x64":
                places = {name: _function_entry(stream, symbols[name], segments)
                          for name in CODE_SYMBOLS if name in symbols}
                if EVAL_FRAME_GETTER in places:
                    field = _field_read(stream, places[EVAL_FRAME_GETTER].offset)
        except ELF_READ_ERRORS as error:
            raise NotAnElf(f"truncated or corrupt ({error})") from None
    return _Facts(probes, version, interpreter, places, field)


def _function_entry(stream, address: int, segments) -> Place:
    """Where to probe a function's entry: past its endbr64 where it begins with one (a uprobe
    there is single-stepped, a uprobe on the next instruction is emulated: 10 us a hit against
    the same as a USDT probe's)."""
    offset = file_offset(address, segments)
    stream.seek(offset)
    if stream.read(len(ENDBR64)) == ENDBR64:
        return Place(offset + len(ENDBR64), address + len(ENDBR64), address)
    return Place(offset, address, address)


def _field_read(stream, offset: int) -> Optional[int]:
    """The displacement of a getter's first instruction, `mov rax, [rdi + field]` (its
    endbr64 stepped over already); None where it is something else."""
    stream.seek(offset)
    code = stream.read(7)
    size = _MOV_FROM_RDI.get(code[:3])
    if size is None or len(code) < 3 + size:
        return None
    return int.from_bytes(code[3 : 3 + size], "little", signed=True)


def inspect_binary(path: str, shown_path: Optional[str] = None) -> Optional[PythonBinary]:
    """The CPython and probe facts of an ELF file, or None if it has neither (or is no ELF
    file); NotAnElf when it starts like one but cannot be read."""
    if not _is_elf(path):
        return None
    stat = os.stat(path)
    facts = _inspect(path, (stat.st_dev, stat.st_ino, stat.st_mtime_ns))
    if facts is None:
        return None
    shown_path = shown_path or path
    return PythonBinary(path, shown_path, replace(facts.probes, path=shown_path), facts.version, facts.interpreter,
                        facts.places, facts.eval_frame_field)


def inspect_named_binary(path: str, shown_path: Optional[str] = None) -> Optional[PythonBinary]:
    """inspect_binary for a file the user named: an unreadable one is an error to report."""
    if os.path.isdir(path):
        raise NotPython(f"{shown_path or path} is a directory, not an ELF file")
    try:
        return inspect_binary(path, shown_path)
    except NotAnElf as error:
        raise NotPython(f"{shown_path or path}: not a readable ELF file: {error}") from None


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int
    inode: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    try:
        with open(f"/proc/{pid}/maps") as maps:
            lines = maps.read().splitlines()
    except FileNotFoundError:
        raise NotFound(f"no process with PID {pid}") from None
    except PermissionError:
        raise NotPermitted(f"cannot read the memory map of PID {pid}: permission denied (run it as root)") from None
    mappings = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        start, end = (int(value, 16) for value in fields[0].split("-"))
        mappings.append(Mapping(start, end, int(fields[2], 16), int(fields[4]), fields[5]))
    return mappings


def process_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


TASKS_MAX = 65536  # threads of one process read, at most


def thread_ids(pid: int) -> list[int]:
    """The TIDs of pid's threads now (at most TASKS_MAX); [] once it is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")[:TASKS_MAX]
    except OSError:
        return []
    return [int(task) for task in tasks if task.isdigit()]


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc stat file after the command, which may hold spaces and
    parentheses: [0] the state, [1] the parent, and on as proc(5) numbers them from 3."""
    return text[text.rindex(")") + 2 :].split() if ")" in text else []


def thread_stat(pid: int, tid: int) -> list[str]:
    """A thread's stat fields (stat_fields); [] once it has exited."""
    text = thread_file(pid, tid, "stat")
    return stat_fields(text) if text else []


def process_state(pid: int) -> str:
    """A process's state letter (R, S, Z, ...); "" once it has gone."""
    fields = thread_stat(pid, pid)
    return fields[0] if fields else ""


def thread_file(pid: int, tid: int, name: str) -> Optional[str]:
    """A file of a thread's /proc entry (comm, stat, syscall, ...); None once it has exited."""
    try:
        with open(f"/proc/{pid}/task/{tid}/{name}") as stream:
            return stream.read()
    except OSError:
        return None


def thread_name(pid: int, tid: int) -> str:
    """A thread's name (its comm), or "" once it has exited."""
    return (thread_file(pid, tid, "comm") or "").strip()


PF_KTHREAD = 0x00200000  # in /proc/PID/stat's flags: a kernel thread


def is_kernel_thread(pid: int) -> bool:
    """Whether pid is a live kernel thread. NotFound for no such process, or one that has
    exited and waits to be reaped (a zombie, which maps nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        raise NotFound(f"no process with PID {pid}") from None
    fields = stat_fields(text)
    if fields[0] in ("Z", "X"):
        raise NotFound(f"{describe_process(pid)} has exited (its parent has not reaped it yet)")
    return bool(int(fields[6]) & PF_KTHREAD)


def check_process(pid: int) -> None:
    """That pid is a live user-space process (see is_kernel_thread)."""
    if is_kernel_thread(pid):
        raise NotPython(f"{describe_process(pid)} is a kernel thread, not a Python")


def host_path(pid: int, mapping: Mapping, lasting: bool = False) -> str:
    """A path to the very file mapped, from outside the process. map_files names the mapped
    inode itself, even when deleted or replaced, but needs root. Without it, the path the
    kernel shows is relative to our root, or to the process's root in another mount
    namespace: take the candidate that is the mapped inode. lasting: a path that outlives the
    process (--all attaches to files found in processes that may exit meanwhile) first."""
    mapped = f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}"
    if os.access(mapped, os.R_OK) and not lasting:
        return mapped
    path = mapping.path.removesuffix(" (deleted)")
    for candidate in (path, f"/proc/{pid}/root{path}") if lasting else (f"/proc/{pid}/root{path}", path):
        try:
            if os.stat(candidate).st_ino == mapping.inode:
                return candidate
        except OSError:
            continue
    return mapped


# Files passed over by a system-wide search since the last skipped_binaries(): a damaged ELF
# file with probe notes, mapped by some process (any user's).
_skipped: dict[str, str] = {}
SKIPPED_NOTED = 16


def skipped_binaries() -> list[str]:
    """Notes naming the damaged files a system-wide search passed over, once each."""
    notes = [f"passed over {path}: {why}" for path, why in sorted(_skipped.items())]
    _skipped.clear()
    return notes


def process_binaries(pid: int, with_probes: bool = False) -> list[PythonBinary]:
    """Every mapped ELF file of a process that holds CPython or USDT probes (with_probes: only
    those with probes, found faster, through paths that outlive the process where they can)."""
    binaries = []
    seen: set[int] = set()
    for mapping in read_maps(pid):
        if mapping.inode in seen or mapping.offset != 0:
            continue
        seen.add(mapping.inode)
        path = host_path(pid, mapping, lasting=with_probes)
        if with_probes and not has_probe_notes(path):
            continue
        try:
            binary = inspect_binary(path, mapping.path)
        except NotAnElf as error:  # a damaged file mapped as data: no probes of ours there
            if with_probes and len(_skipped) < SKIPPED_NOTED:
                _skipped.setdefault(mapping.path, f"not a readable ELF file: {error}")
            continue
        if binary is not None:
            binaries.append(binary)
    return binaries


def without_probes(binary: PythonBinary) -> str:
    """Why a binary has no USDT probes at all."""
    if binary.probes.damaged_notes:
        return (f"{binary.describe()} has no readable USDT probes: its .note.stapsdt section is there but zeroed "
                "or corrupt")
    return f"{binary.describe()} has no USDT probes: it was built without --with-dtrace"


def _probe_list(binary: PythonBinary) -> str:
    names = sorted(set(binary.probes.names()))
    return ", ".join(names) if names else "none"


def select_binaries(
    binaries: list[PythonBinary], command: str, commands: dict[str, tuple[str, ...]], where: str
) -> list[PythonBinary]:
    """The binaries carrying the probes `command` needs (commands: every command's needed
    probes), or the reason there are none, with what still works there."""
    needed = commands[command]
    chosen = [binary for binary in binaries if binary.has(needed)]
    if chosen:
        return chosen
    interpreters = [binary for binary in binaries if binary.interpreter]
    with_probes = [binary for binary in binaries if binary.probes.names()]
    if not interpreters and not with_probes:
        raise NotPython(f"{where} is not a Python: it holds no CPython interpreter")
    if not with_probes:
        damaged = [binary for binary in binaries if binary.probes.damaged_notes]
        raise NoProbes(without_probes(damaged[0] if damaged else interpreters[0]))
    binary = with_probes[0]
    missing = [name for name in needed if not binary.probes.probe(name)]
    why = {PROBE_HISTORY[name] for name in missing if name in PROBE_HISTORY}
    working = [name for name, probes in commands.items() if binary.has(probes)]
    readable = any(stacks_readable(b.version) for b in interpreters)
    if readable:
        working += STACK_COMMANDS
    hint = ""
    if readable and command in ("stack", "calls"):
        hint = "; pybpftrace profile samples where the time goes from the stacks themselves, no probes needed"
    raise NoProbes(
        f"{binary.describe()} has no {'/'.join(missing)} probes, which pybpftrace {command} "
        f"needs" + (f" ({'; '.join(sorted(why))})" if why else "")
        + f". Its probes: {_probe_list(binary)}. Commands that work there: {', '.join(working)}{hint}"
    )


def resolve_command(argv0: str, depth: int = 0) -> str:
    """The ELF binary a command runs: found on PATH, through symlinks and #! lines."""
    found = shutil.which(argv0) if "/" not in argv0 else argv0
    if not found or not os.path.exists(found):
        raise CommandNotFound(f"command not found: {argv0}")
    path = os.path.realpath(found)
    if os.path.isdir(path):
        raise CommandNotFound(f"{argv0} is a directory")
    if _is_elf(path):
        return path
    with open(path, "rb") as stream:
        first = stream.readline(256)
    if not first.startswith(b"#!") or depth > 4:
        raise NotPython(f"{argv0} ({path}) is neither an ELF binary nor a #! script")
    words = shlex.split(first[2:].decode(errors="replace"))
    if not words:
        raise NotPython(f"{argv0} ({path}) has an empty #! line")
    if os.path.basename(words[0]) == "env":
        words = [word for word in words[1:] if not word.startswith("-")]
        if not words:
            raise NotPython(f"{argv0} ({path}) runs env without a program")
    return resolve_command(words[0], depth + 1)


CHROOT_OPTIONS_WITH_VALUE = ("--userspec", "--groups")  # GNU chroot's, where the value is the next word
EXECVP_PATH = "/bin:/usr/bin"  # glibc's, where PATH is not set
LINKS_MAX = 40


def chrooted(argv: list[str]) -> Optional[tuple[str, list[str]]]:
    """`chroot [OPTION]... NEWROOT COMMAND [ARG]...` as (NEWROOT, [COMMAND, ARG...]); None for
    any other command (or a chroot without a command, which runs a shell)."""
    if os.path.basename(argv[0]) != "chroot":
        return None
    words = argv[1:]
    while words and words[0].startswith("-") and words[0] != "-":
        option = words.pop(0)
        if option == "--":
            break
        if option in CHROOT_OPTIONS_WITH_VALUE:  # `--userspec USER:GROUP`, its value a word of its own
            words = words[1:]
    return (words[0], words[1:]) if len(words) >= 2 else None


def resolve_in_root(root: str, command: str) -> str:
    """The file a command names inside another root, as this process opens it: found on the
    PATH chroot searches (ours, which it inherits), each symlink followed inside that root."""
    if "/" in command:
        candidates = [command]
    else:
        candidates = [f"{directory or '.'}/{command}" for directory in os.environ.get("PATH", EXECVP_PATH).split(":")]
    for candidate in candidates:
        host = _inside_root(root, candidate)
        if host is not None and os.path.isfile(host):
            return host
    raise CommandNotFound(f"command not found in {root}: {command}")


def _inside_root(root: str, path: str) -> Optional[str]:
    """Where `path` of the root is, as this process opens it: every link on the way (a /bin
    that is /usr/bin, python3 -> python3.13) followed inside the root, never out of it. None
    past LINKS_MAX links (a loop)."""
    pending = [part for part in path.split("/") if part]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part in (".", ".."):
            if part == ".." and resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        if not os.path.islink(host):
            resolved.append(part)
            continue
        links += 1
        if links > LINKS_MAX:
            return None
        target = os.readlink(host)
        if target.startswith("/"):
            resolved = []
        pending = [piece for piece in target.split("/") if piece] + pending
    return os.path.join(root, *resolved)


def command_name(argv0: str, binary: str) -> str:
    """How to name a command in messages: with the binary it resolved to, when that is not
    the command itself (a #! script, a symlink, a name found on PATH)."""
    return argv0 if os.path.realpath(argv0) == binary else f"{argv0} (which runs {binary})"


DYNAMIC_TAGS_MAX = 4096  # a real executable has a few dozen


def _needed_libpython(elf, stream) -> tuple[list[str], list[str]]:
    """The libpython names an ELF file needs, and where it says to look (RUNPATH, RPATH)."""
    needed: list[str] = []
    search: list[str] = []
    dynamic = elf.get_section_by_name(".dynamic")
    if not isinstance(dynamic, DynamicSection):
        return needed, search
    for count, tag in enumerate(dynamic.iter_tags()):
        if count >= DYNAMIC_TAGS_MAX:
            break
        if tag.entry.d_tag == "DT_NEEDED" and tag.needed.startswith("libpython"):
            needed.append(tag.needed)
        elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
            value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
            search += value.split(":")
    return needed, search


def linked_libpython(binary_path: str) -> list[str]:
    """libpython*.so files an executable loads, found the way the dynamic loader would
    (RUNPATH/RPATH with $ORIGIN, LD_LIBRARY_PATH, then the system directories)."""
    try:
        needed, search = parsed_elf(binary_path, _needed_libpython)
    except NotAnElf:
        return []
    origin = os.path.dirname(binary_path)
    search = [entry.replace("$ORIGIN", origin) for entry in search]
    search += os.environ.get("LD_LIBRARY_PATH", "").split(":")
    search += _system_library_dirs()
    found = []
    for name in needed:
        for directory in filter(None, search):
            candidate = os.path.join(directory, name)
            if os.path.exists(candidate):
                found.append(os.path.realpath(candidate))
                break
    return found


def _system_library_dirs() -> list[str]:
    dirs = []
    try:
        for name in sorted(os.listdir("/etc/ld.so.conf.d")):
            with open(os.path.join("/etc/ld.so.conf.d", name)) as conf:
                dirs += [line.strip() for line in conf if line.startswith("/")]
    except OSError:
        pass
    return dirs + ["/lib", "/usr/lib", "/lib64", "/usr/lib64"]


def command_binaries(argv: list[str]) -> tuple[str, list[PythonBinary]]:
    """The binary a command will run, named for messages, and the Python binaries it will run:
    its executable and the libpython it loads."""
    inside = chrooted(argv)
    if inside:
        root, command = inside
        executable = resolve_in_root(root, command[0])
        binary = inspect_named_binary(executable)
        return f"{shlex.join(argv[:argv.index(root) + 2])} (which runs {executable})", [binary] if binary else []
    executable = resolve_command(argv[0])
    binaries = []
    for path in [executable, *linked_libpython(executable)]:
        binary = inspect_named_binary(path)
        if binary is not None:
            binaries.append(binary)
    return command_name(argv[0], executable), binaries


def describe_process(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return f"PID {pid} ({comm.read().strip()})"
    except OSError:
        return f"PID {pid}"


class Launched:
    """A command forked but held before exec until the tracer is attached, so tracing
    covers it from its first instruction. Until exec the child runs only builtins (no
    Python-level calls that would show up in the trace)."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        executable = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
        if not executable:
            raise CommandNotFound(f"command not found: {argv[0]}")
        hold, self._release = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._release)
            if not os.read(hold, 1):  # the tracer died before attaching
                os._exit(127)
            # Python ignores SIGPIPE and SIGXFSZ; an exec keeps ignored signals ignored. The C
            # function itself: signal.signal is Python code, which the probes would report.
            _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
            _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
            try:
                os.execv(executable, argv)
            except OSError as error:
                os.write(2, f"pybpftrace: cannot run {argv[0]}: {error.strerror}\n".encode())
            os._exit(127)
        os.close(hold)
        self.status: Optional[int] = None

    def release(self) -> None:
        os.write(self._release, b"go")
        os.close(self._release)
        self._release = -1

    def poll(self) -> Optional[int]:
        """The exit code (128 + signal when killed) once the command has ended."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = exit_code(status)
        return self.status

    def wait(self) -> int:
        if self.status is None:
            self.status = exit_code(os.waitpid(self.pid, 0)[1])
        return self.status

    def abandon(self) -> None:
        """The trace failed before starting: let the held child exit untraced and unrun."""
        if self._release >= 0:
            os.close(self._release)
            self._release = -1
            os.waitpid(self.pid, 0)


def exit_code(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


SYSTEM_WIDE = -1  # the "PID" of uprobes on files, in every process that runs them


@dataclass
class Targets:
    """The processes to trace (SYSTEM_WIDE: every process running the binaries, now and
    later) and, for each, the binaries carrying the needed probes."""

    binaries: dict[int, list[PythonBinary]]
    launched: Optional[Launched] = None
    notes: list[str] = field(default_factory=list)  # what the search passed over, and why

    @property
    def pids(self) -> list[int]:
        return [pid for pid in self.binaries if pid != SYSTEM_WIDE]


@dataclass
class TargetOptions:
    """What to trace, as the command line says it: PIDs, a command to launch, or binaries
    (--binary PATH, --all) whose every process is traced."""

    pids: list[int] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    binaries: list[str] = field(default_factory=list)
    all_pythons: bool = False
    subprocesses: bool = False  # the PIDs' (or command's) descendants too, now and later


def find_targets(options: TargetOptions, command: str, commands: dict[str, tuple[str, ...]]) -> Targets:
    """The processes (or the launched argv, or binaries) to trace for `command`; commands
    holds the probes each command needs, to say what works where this one cannot."""
    if options.argv:
        name, binaries = command_binaries(options.argv)
        binaries = select_binaries(binaries, command, commands, name)
        launched = Launched(options.argv)
        return Targets({launched.pid: binaries}, launched)
    found: dict[int, list[PythonBinary]] = {}
    for pid in options.pids:
        check_process(pid)
        found[pid] = select_binaries(process_binaries(pid), command, commands, f"PID {pid}")
    chosen = []
    for path in options.binaries:
        if not os.path.exists(path):
            raise NotFound(f"no such file: {path}")
        binary = inspect_named_binary(os.path.realpath(path), path)
        chosen += select_binaries([binary] if binary else [], command, commands, path)
    if options.all_pythons:
        chosen += all_pythons(commands[command])
        if not chosen:
            raise NoProbes(f"no Python with the probes pybpftrace {command} needs is running or installed")
    if chosen:
        found[SYSTEM_WIDE] = _distinct(chosen)
    return Targets(found, notes=skipped_binaries())


PYTHON_DIRECTORIES = ("/usr/bin", "/usr/local/bin")


def all_pythons(needed: tuple[str, ...]) -> list[PythonBinary]:
    """Every CPython binary with the needed probes that a running process maps, or that is
    installed as python3* in the usual directories (so that ones started later are traced)."""
    candidates = []
    for directory in PYTHON_DIRECTORIES:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        candidates += [os.path.join(directory, name) for name in names if name.startswith("python3")]
    found = []
    for path in candidates:
        try:
            found.append(inspect_binary(os.path.realpath(path)))
        except (NotAnElf, OSError):
            continue  # damaged, or gone meanwhile
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found += process_binaries(int(entry), with_probes=True)
            except (NotFound, NotPermitted, OSError):
                continue  # gone meanwhile, or not ours to read
    return [binary for binary in found if binary is not None and binary.has(needed)]


def _distinct(binaries: list[PythonBinary]) -> list[PythonBinary]:
    """One binary per file (inode), whatever path led to it."""
    seen: set[tuple[int, int]] = set()
    distinct = []
    for binary in binaries:
        try:
            stat = os.stat(binary.path)
        except OSError:  # found in a process that exited since
            continue
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            distinct.append(binary)
    return distinct
