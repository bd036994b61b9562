"""`pybpftrace list` on a process, an executable and a shared library."""

import json

import pytest

from support import HOST, Target, run_tracer
from pybpftrace.probes import read_probes

LIBPYTHON311 = f"{HOST.root}/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
PROBES_311 = sorted(["audit", "gc__done", "gc__start", "line", "import__find__load__start",
                     "import__find__load__done", "function__entry", "function__return"])


def expected_text(path, kind):
    probes = read_probes(path)
    lines = [f"{path}: CPython 3.11.2, x86-64 {kind}, 8 probes"]
    for probe in probes.probes:
        lines.append(f"  python:{probe.name}")
        (semaphore,) = probe.semaphores
        lines.append(f"    semaphore {semaphore.address:#x} (file offset {semaphore.offset:#x})")
        for location in probe.locations:
            lines.append(f"    location  {location.address:#x} (file offset {location.offset:#x})  args: {location.args}")
    return lines


@pytest.mark.parametrize("path, kind", [(HOST.host_python, "executable"), (LIBPYTHON311, "PIE/shared object")])
def test_list_a_file(path, kind):
    result = run_tracer("list", path)
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == expected_text(path, kind)


def test_list_a_process_as_text_and_json():
    with Target("calls.py") as target:
        text = run_tracer("list", target.pid)
        data = run_tracer("list", "--json", target.pid)
    assert text.returncode == data.returncode == 0
    assert text.stdout.decode().splitlines() == [f"PID {target.pid} (python3.11)"] + expected_text(HOST.host_python, "executable")
    listing = json.loads(data.stdout)
    assert listing["target"] == f"PID {target.pid} (python3.11)"
    (obj,) = listing["objects"]
    assert (obj["path"], obj["python"], obj["machine"], obj["pie"]) == (HOST.host_python, "3.11.2", "x86-64", False)
    assert obj["opened_as"].startswith(f"/proc/{target.pid}/map_files/")
    assert sorted(probe["name"] for probe in obj["probes"]) == PROBES_311
    entry = next(probe for probe in obj["probes"] if probe["name"] == "function__entry")
    (location,) = entry["locations"]
    reference = read_probes(HOST.host_python).probe("function__entry").locations[0]
    assert location["address"] == reference.address and location["offset"] == reference.offset
    assert location["semaphore"] == {"address": reference.semaphore.address, "offset": reference.semaphore.offset}
    assert location["args"] == "8@%rbp 8@%r12 -4@%eax"
    assert location["arguments"] == [
        {"size": 8, "signed": False, "operand": "register rbp"},
        {"size": 8, "signed": False, "operand": "register r12"},
        {"size": 4, "signed": True, "operand": "register eax"},
    ]
