"""`pybpftrace list`: every USDT probe of a process, an executable or a shared library."""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from ..argspec import ArgSpecError, format_operand, parse_spec
from ..errors import NotFound, NotPython
from ..probes import Location
from ..target import PythonBinary, describe_process, inspect_named_binary, is_kernel_thread, process_binaries
from ..versions import format_version


def binaries_of(target: str) -> tuple[str, list[PythonBinary]]:
    """What `target` names (a PID or a path) and its ELF files that carry probes."""
    if target.isdigit():
        pid = int(target)
        if is_kernel_thread(pid):
            return f"{describe_process(pid).removesuffix(')')}, a kernel thread)", []
        return describe_process(pid), process_binaries(pid)
    if not os.path.exists(target):
        raise NotFound(f"no such file: {target}")
    binary = inspect_named_binary(target)
    if binary is None:
        with open(target, "rb") as stream:
            if stream.read(4) != b"\x7fELF":
                raise NotPython(f"{target} is not an ELF file")
    return target, [binary] if binary else []


def _arguments(location: Location, machine: str) -> list[dict[str, Any]] | str:
    try:
        arguments = parse_spec(location.args, machine)
    except ArgSpecError as error:
        return f"unsupported: {error}"
    return [
        {"size": arg.size, "signed": arg.signed, "operand": format_operand(arg.operand)}
        for arg in arguments
    ]


def as_json(name: str, binaries: list[PythonBinary]) -> dict[str, Any]:
    objects = []
    for binary in binaries:
        probes = []
        for probe in binary.probes.probes:
            locations = [
                {
                    "address": location.address,
                    "offset": location.offset,
                    "semaphore": (
                        {"address": location.semaphore.address, "offset": location.semaphore.offset}
                        if location.semaphore
                        else None
                    ),
                    "args": location.args,
                    "arguments": _arguments(location, binary.probes.machine),
                }
                for location in probe.locations
            ]
            probes.append({"provider": probe.provider, "name": probe.name, "locations": locations})
        objects.append(
            {
                "path": binary.shown_path,
                "opened_as": binary.path,
                "machine": binary.probes.machine,
                "pie": binary.probes.pie,
                "python": ".".join(map(str, binary.version)) if binary.version else None,
                "probes": probes,
            }
        )
    return {"target": name, "objects": objects}


def write_text(name: str, binaries: list[PythonBinary], out: TextIO) -> None:
    if not binaries:
        out.write(f"{name}: no USDT probes\n")
        return
    if name.startswith("PID "):
        out.write(f"{name}\n")
    for binary in binaries:
        kind = "PIE/shared object" if binary.probes.pie else "executable"
        python = f"{format_version(binary.version)}, " if binary.interpreter else ""
        count = len(binary.probes.probes)
        out.write(
            f"{binary.shown_path}: {python}{binary.probes.machine} {kind}, {count} probes\n"
        )
        if binary.probes.damaged_notes:
            out.write("  no readable USDT probes: the .note.stapsdt section is there but zeroed or corrupt\n")
        elif binary.interpreter and not count:
            out.write("  no USDT probes: this CPython was built without --with-dtrace\n")
        for probe in binary.probes.probes:
            out.write(f"  {probe.provider}:{probe.name}\n")
            for semaphore in probe.semaphores:
                out.write(
                    f"    semaphore {semaphore.address:#x} (file offset {semaphore.offset:#x})\n"
                )
            for location in probe.locations:
                out.write(
                    f"    location  {location.address:#x} (file offset {location.offset:#x})"
                    f"  args: {location.args or '(none)'}\n"
                )


def run(target: str, json_output: bool, out: TextIO) -> int:
    name, binaries = binaries_of(target)
    if json_output:
        out.write(json.dumps(as_json(name, binaries), indent=2) + "\n")
    else:
        write_text(name, binaries, out)
    return 0
