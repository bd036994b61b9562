"""A BPF program for a set of probes: a C source from bpf/, plus generated argument readers
and one entry point per (probe, distinct argument spec), compiled and loaded with bcc."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from .argspec import ArgSpecError, Argument, parse_spec
from .errors import KernelSetup, NoProbes, TraceError
from .eval_frame import EVAL_FRAME_ROUTE as EVAL_FRAME, USDT, code_place
from .probes import Location
from .pyobjects import ObjectModel, object_model
from .readers import integer_literal, reader_function
from .target import PythonBinary


def bpf_dir() -> Path:
    """bpf/ beside the package in a source tree, or inside it once installed as a wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "bpf", package.parent / "bpf"):
        if (candidate / "events.h").is_file():
            return candidate
    raise TraceError(f"the BPF sources are missing (looked in {package}/bpf and {package.parent}/bpf)")


BATCH = 4096  # map entries read or deleted a system call

_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.MULTILINE)


def inline_includes(name: str, seen: Optional[set] = None) -> str:
    """The source with our own `#include "x.h"` files pasted in: bcc rewrites map calls
    (`events.ringbuf_reserve(...)`) only in the text it is given, not in included files."""
    seen = set() if seen is None else seen
    seen.add(name)
    text = (bpf_dir() / name).read_text()

    def include(match: re.Match) -> str:
        included = match.group(1)
        return "" if included in seen else inline_includes(included, seen)

    return _INCLUDE.sub(include, text)


@dataclass(frozen=True)
class Handler:
    """A C function of the program, `int NAME(struct pt_regs *ctx, __u64 *args)`, run for
    each hit of one probe with the probe's first `arguments` arguments."""

    function: str
    arguments: int


@dataclass(frozen=True)
class Loss:
    """A counter of bpf/events.h's enum counter and what it costs, for the summary line:
    text holds {n} (the count) and may name map sizes ({nodes}); dropped says whether those
    events were dropped (and count toward "N lost")."""

    counter: int
    text: str
    dropped: bool = False


@dataclass(frozen=True)
class CodeProbe:
    """A uprobe that is no USDT probe: at a place in a binary's code (a function's entry, an
    instruction's: eval_frame.code_place), or a uretprobe on a function's returns; in the
    binaries that have the place and need it, those of a route only where `route` says."""

    place: str
    handler: Handler
    returns: bool = False
    route: Optional[str] = None
    needed: Callable[[PythonBinary], bool] = lambda binary: True


def marker(symbol: str, handler: Handler) -> CodeProbe:
    """A function's entry some versions need probed (Quirks.markers)."""
    return CodeProbe(symbol, handler, route=USDT, needed=lambda binary: symbol in binary.quirks.markers)


@dataclass(frozen=True)
class ProgramSpec:
    source: str  # a file in bpf/
    handlers: tuple[tuple[str, Handler], ...]  # (probe name, handler), in attach order
    code_probes: tuple[CodeProbe, ...] = ()  # after the handlers, in attach order
    # Integers a binary's handlers get after the probe's arguments (args[Handler.arguments]
    # on): per-binary facts such as object layout offsets, so that binaries of different
    # versions traced at once each get their own entry points.
    binary_constants: Callable[[PythonBinary], tuple[int, ...]] = lambda binary: ()
    # The program walks Python stacks (bpf/pystacks.h): its code objects come on `codes`; its
    # walks tail-call a continuation until done: (program array, function, program kind), each
    # loaded where the program has the array.
    walker: bool = False
    continuations: tuple[tuple[str, str, str], ...] = ()
    # The handlers tell names apart (common.h's name_id): after the binary's constants, each
    # entry point passes where its CPython's compact ASCII str keeps its characters and the
    # distance from the probe to PyUnicode_Type (names_layout below).
    names_layout: bool = False
    losses: tuple[Loss, ...] = ()  # the counters it keeps besides common.h's
    # It follows calls (bpf/frame_events.h), by a route per binary: its handlers are the USDT
    # route's, and every entry point passes the binary's index in binary_layouts and the
    # link-time address of the place it probes (each process registers itself at its first hit).
    follows_calls: bool = False
    # It follows calls and samples stacks (top): its targets are the sampled ones, and calls
    # are counted where they have the function probes.
    walker_samples: bool = False

    @property
    def probe_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.handlers)


@dataclass(frozen=True)
class Placement:
    """Where one generated entry point is attached."""

    entry: str
    binary: PythonBinary
    location: Location
    returns: bool = False  # a uretprobe
    route: Optional[str] = None
    probe: Optional[str] = None  # the USDT probe's name


@dataclass
class GeneratedProgram:
    source: str
    placements: list[Placement] = field(default_factory=list)
    binaries: list[PythonBinary] = field(default_factory=list)  # by their index in binary_layouts
    skipped: list[str] = field(default_factory=list)  # probe locations left out, and why


def generate(spec: ProgramSpec, binaries: list[PythonBinary],
             eval_frame: frozenset[PythonBinary] = frozenset()) -> GeneratedProgram:
    """The program's C text and where each entry point goes. Locations whose specs read the
    same way share one reader and one entry point. eval_frame: the binaries whose calls a
    program that follows calls takes from their evaluator, not their function probes."""
    readers: dict[tuple[Argument, ...], str] = {}
    entries: dict[tuple[str, tuple[Argument, ...], tuple[int, ...]], str] = {}
    placements = []
    generated = []
    skipped = []
    usdt = [binary for binary in binaries if not (spec.follows_calls and binary in eval_frame)]
    for probe_name, handler in spec.handlers:
        for binary in usdt:
            probe = binary.probes.probe(probe_name)
            if probe is None:
                continue
            for location in probe.locations:
                constants = spec.binary_constants(binary)
                if spec.names_layout:
                    constants += names_layout(binary, location)
                if spec.follows_calls:
                    constants += (binaries.index(binary), location.address)
                arguments, problem = _read_arguments(location, binary, handler.arguments)
                if problem:  # one binary's bad note costs that probe there, not the command
                    skipped.append(f"{probe_name} at {location.address:#x} in {binary.shown_path} left out: {problem}")
                    continue
                if arguments not in readers:
                    readers[arguments] = f"read_arguments_{len(readers)}"
                    generated.append(reader_function(readers[arguments], arguments))
                key = (probe_name, arguments, constants)
                if key not in entries:
                    entries[key] = f"probe_{probe_name}_{len(entries)}"
                    generated.append(
                        _entry_point(entries[key], readers[arguments], handler, len(arguments), constants)
                    )
                placements.append(Placement(entries[key], binary, location, route=USDT if spec.follows_calls else None,
                                            probe=probe_name))
    for probe in spec.code_probes:
        for binary in binaries:
            route = EVAL_FRAME if binary in eval_frame else USDT
            place = code_place(binary, probe.place)
            if place is None or not probe.needed(binary) or probe.route not in (None, route):
                continue
            constants = (binaries.index(binary), place.address) if spec.follows_calls else ()
            entry = f"{'return' if probe.returns else 'at'}_{probe.place.strip('_')}_{len(entries)}"
            entries[(entry, (), constants)] = entry
            generated.append(_entry_point(entry, None, probe.handler, probe.handler.arguments, constants))
            placements.append(Placement(entry, binary, Location(place.address, place.offset, "", None), probe.returns,
                                        probe.route))
    if skipped and not placements:
        raise NoProbes(skipped[0])
    source = inline_includes(spec.source) + "\n/* Generated by pybpftrace.program */\n"
    return GeneratedProgram(source + "\n".join(generated), placements, list(binaries), skipped)


def _read_arguments(location: Location, binary: PythonBinary, needed: int) -> tuple[tuple[Argument, ...], str]:
    """A probe location's arguments as its handler needs them, or why they cannot be read."""
    try:
        arguments = parse_spec(location.args, binary.probes.machine)
    except ArgSpecError as error:
        return (), str(error)
    if len(arguments) < needed:
        return arguments, f"{len(arguments)} arguments, {needed} expected"
    return arguments, ""


def names_layout(binary: PythonBinary, location: Location) -> tuple[int, int]:
    """(where a compact ASCII str's characters start, PyUnicode_Type's address minus the probe
    location's): both link-time, so that their difference holds wherever the file is loaded.
    (0, 0) where the layout or the type is unknown: names are then told by their text."""
    model = _object_model(binary)
    if model.layout is None:
        return (0, 0)
    return (model.layout.ascii_data, model.symbols["PyUnicode_Type"] - location.address)


@functools.lru_cache(maxsize=64)
def _object_model(binary: PythonBinary) -> ObjectModel:
    return object_model(binary)


def _entry_point(
    name: str, reader: Optional[str], handler: Handler, count: int, constants: tuple[int, ...] = ()
) -> str:
    """The constants go after the handler's arguments, over any probe argument it ignores."""
    read = f"\t{reader}(ctx, args);\n" if reader else ""
    read += "".join(
        f"\targs[{handler.arguments + index}] = {integer_literal(value)};\n" for index, value in enumerate(constants)
    )
    return (
        f"int {name}(struct pt_regs *ctx)\n{{\n"
        f"\t__u64 args[{max(count, handler.arguments + len(constants))}] = {{}};\n{read}"
        f"\treturn {handler.function}(ctx, args);\n}}\n"
    )


def _check_kernel_headers() -> None:
    release = os.uname().release
    build = Path(f"/lib/modules/{release}/build")
    if not build.exists() and not Path("/sys/kernel/kheaders.tar.xz").exists():
        raise KernelSetup(
            f"no kernel headers for Linux {release} ({build} is missing), which bcc needs "
            "to compile: run `make setup` from the pybpftrace checkout"
        )


def _import_bcc():
    try:
        import bcc
    except ImportError:
        raise KernelSetup(
            "bcc is not importable: install Debian's python3-bpfcc and run pybpftrace from "
            "a venv made with --system-site-packages (`make setup` does both)"
        ) from None
    return bcc


class LoadedProgram:
    """The compiled program in the kernel; its maps and entry points by name."""

    def __init__(self, generated: GeneratedProgram, defines: dict[str, int]):
        _check_kernel_headers()
        bcc = _import_bcc()
        cflags = ["-w"] + [f"-D{name}={int(value)}" for name, value in defines.items()]
        try:
            self._bpf = bcc.BPF(text=generated.source, cflags=cflags)
        except Exception as error:  # bcc raises bare Exception and prints clang's errors
            raise TraceError(f"the BPF program did not compile: {error}") from None
        self._types = {"kprobe": bcc.BPF.KPROBE, "perf_event": bcc.BPF.PERF_EVENT, "tracepoint": bcc.BPF.TRACEPOINT}
        self._lib = bcc.libbcc.lib
        self.placements = generated.placements

    def entry_fd(self, name: str) -> int:
        return self.function_fd(name, "kprobe")

    def function_fd(self, name: str, kind: str) -> int:
        """A function of the program loaded as a program of this kind: kprobe (uprobes too),
        perf_event, tracepoint."""
        try:
            return self._bpf.load_func(name.encode(), self._types[kind]).fd
        except Exception as error:  # bcc raises bare Exception and prints the verifier's log
            raise TraceError(f"the kernel refused the BPF program: {error}") from None

    def function_instructions(self, name: str) -> tuple[int, int]:
        """Where bcc keeps a function's compiled instructions, and their size in bytes, for a
        program that bcc cannot load itself (pybpftrace/iterator.py)."""
        from bcc import libbcc

        encoded = name.encode()
        return (libbcc.lib.bpf_function_start(self._bpf.module, encoded),
                libbcc.lib.bpf_function_size(self._bpf.module, encoded))

    def attach_perf_event(self, event_type: int, config: int, name: str, sample_period: int) -> None:
        """name run at each `sample_period` of the event, on every CPU."""
        self.function_fd(name, "perf_event")
        self._bpf.attach_perf_event(ev_type=event_type, ev_config=config, fn_name=name.encode(),
                                    sample_period=sample_period)

    def table(self, name: str):
        return self._bpf.get_table(name)

    def skipped_runs(self) -> int:
        """How many times the kernel did not run one of the loaded programs because another BPF
        program was running on that CPU (its recursion_misses, as /proc shows them)."""
        skipped = 0
        for function in self._bpf.funcs.values():
            try:
                with open(f"/proc/self/fdinfo/{function.fd}") as info:
                    for line in info:
                        if line.startswith("recursion_misses:"):
                            skipped += int(line.split(":", 1)[1])
            except OSError:  # not loaded any more, or a kernel without the figure
                continue
        return skipped

    def has_table(self, name: str) -> bool:
        try:
            self._bpf.get_table(name)
        except KeyError:
            return False
        return True

    def entries(self, name: str) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a hash map as raw bytes (a per-CPU value holds each CPU's in
        turn, 8-byte aligned), read BATCH entries a system call: fast, and memory for one
        batch however large the map may grow."""
        table = self.table(name)
        key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
        keys = ctypes.create_string_buffer(key_size * BATCH)
        values = ctypes.create_string_buffer(value_size * BATCH)
        token, count = ctypes.c_uint32(0), ctypes.c_uint32(0)
        started = False
        while True:
            count.value = BATCH
            result = self._lib.bpf_lookup_batch(
                table.map_fd, ctypes.byref(token) if started else None, ctypes.byref(token),
                keys, values, ctypes.byref(count))
            error = ctypes.get_errno()
            if result != 0 and error != errno.ENOENT:
                raise TraceError(f"cannot read the kernel's {name} map: {os.strerror(error)}")
            got_keys, got_values = keys.raw[: count.value * key_size], values.raw[: count.value * value_size]
            for index in range(count.value):
                yield (got_keys[index * key_size : (index + 1) * key_size],
                       got_values[index * value_size : (index + 1) * value_size])
            if result != 0 or not count.value:
                return
            started = True

    def delete(self, name: str, keys: list[bytes]) -> None:
        """Delete these keys (raw bytes, as entries() gives them) from a hash map."""
        table = self.table(name)
        for start in range(0, len(keys), BATCH):
            chunk = keys[start : start + BATCH]
            count = ctypes.c_uint32(len(chunk))
            if self._lib.bpf_delete_batch(table.map_fd, ctypes.create_string_buffer(b"".join(chunk)),
                                          ctypes.byref(count)) != 0:
                raise TraceError(f"cannot delete from the kernel's {name} map: {os.strerror(ctypes.get_errno())}")

    def close(self) -> None:
        self._bpf.cleanup()
