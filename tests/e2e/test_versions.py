"""The version matrix: what each CPython's probes are, what pybpftrace does with them, and an
embedded interpreter whose probes live in libpython. Processes of 3.9, 3.13, 3.14 and 3.15 run
in Debian chroots (the container case: traced from outside through /proc/PID/root)."""

import json
import shutil
import subprocess

import pytest

import expected
from support import (
    HOST,
    HOST_IS_OWN,
    NOT_OWN,
    WITH_FUNCTION_PROBES,
    WITHOUT_FUNCTION_PROBES,
    Target,
    Tracer,
    calls,
    run_tracer,
    script,
)
from pybpftrace.target import inspect_binary

GC_IMPORT_AUDIT = ["audit", "gc__done", "gc__start", "import__find__load__done", "import__find__load__start"]
PROBES = {
    (3, 9): sorted(GC_IMPORT_AUDIT + ["function__entry", "function__return", "line"]),
    (3, 11): sorted(GC_IMPORT_AUDIT + ["function__entry", "function__return", "line"]),
    (3, 13): GC_IMPORT_AUDIT,
    (3, 14): GC_IMPORT_AUDIT,
    (3, 15): sorted(GC_IMPORT_AUDIT + ["function__entry", "function__return"]),
}


def test_version_is_read_from_the_binary_not_its_name(any_interpreter, tmp_path):
    renamed = tmp_path / "python"  # no version in the name
    shutil.copy(any_interpreter.host_python, renamed)
    for path in (any_interpreter.host_python, str(renamed)):
        binary = inspect_binary(path)
        assert binary.interpreter and binary.version[:2] == any_interpreter.version


def test_list_works_everywhere(any_interpreter):
    with Target("calls.py", interpreter=any_interpreter) as target:
        result = run_tracer("list", "--json", target.pid)
    assert result.returncode == 0
    objects = {obj["path"]: obj for obj in json.loads(result.stdout)["objects"]}
    # every mapped ELF file with probes: newer glibc carries its own (provider libc)
    assert all(obj["probes"] for obj in objects.values())
    obj = objects[any_interpreter.host_python]  # the path the kernel shows from outside
    assert obj["opened_as"].startswith(f"/proc/{target.pid}/map_files/")  # the mapped file itself
    assert obj["python"].startswith(f"{any_interpreter}.")
    assert sorted(probe["name"] for probe in obj["probes"]) == PROBES[any_interpreter.version]


def test_315_has_probes_at_several_locations_with_different_specs():
    (py315,) = [i for i in WITH_FUNCTION_PROBES if i.version == (3, 15)]
    py315.prepare()
    probes = inspect_binary(py315.host_python).probes
    imports = probes.probe("import__find__load__done").locations
    assert len(imports) == 2 and len({location.args for location in imports}) == 2
    assert len(probes.probe("audit").locations) == 4


@pytest.mark.parametrize("interpreter", WITHOUT_FUNCTION_PROBES, ids=str)
def test_usdt_route_refused_where_function_probes_were_removed(interpreter):
    interpreter.prepare()
    with Target("calls.py", interpreter=interpreter) as target:
        result = run_tracer("stack", target.pid, "--route", "usdt")
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    version = inspect_binary(interpreter.host_python).version
    assert line == (
        f"pybpftrace: CPython {'.'.join(map(str, version))} at {interpreter.host_python} has no function probes "
        "(CPython 3.12 removed the function probes when PEP 669 monitoring replaced the interpreter's tracing hooks, "
        "and 3.15 restored them); without --route usdt, pybpftrace follows calls through its evaluator (the "
        "eval-frame route)"
    )


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, require_tools):
    """A tiny C program linked against the libpython of the default CPython (Debian's
    libpython3.11.so: PIE, probes in the library)."""
    if not HOST_IS_OWN:
        pytest.skip(f"its python3.X-config and libpython: {NOT_OWN}")
    config = f"{HOST.python}-config"
    require_tools("gcc", config)
    binary = tmp_path_factory.mktemp("embed") / "embed"
    flags = subprocess.run([config, "--cflags", "--ldflags", "--embed"], capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["gcc", script("embed.c"), *flags, "-o", binary], check=True)
    return str(binary)


def test_embedded_interpreter(embedded):
    process = subprocess.Popen([embedded, script("calls.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        listing = run_tracer("list", "--json", process.pid)
        tracer = Tracer("stack", process.pid, "--filename", "calls.py")
        tracer.wait_attached()
        out, _ = process.communicate(b"go\n", timeout=60)
        code, stdout, stderr = tracer.finish()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (library,) = json.loads(listing.stdout)["objects"]
    assert library["path"] == "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    assert library["pie"] and library["python"] == "3.11.2"
    assert code == 0 and out == b"14\n"
    assert "(CPython 3.11.2 at /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0)" in stderr
    assert calls(stdout) == expected.calls_attached(script("calls.py"))
