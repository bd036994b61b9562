"""`pybpftrace audit` against real CPython processes, on every version of the matrix: exact
decoded arguments, kernel-side --event filters, and the classic "which code opens sockets"
question asked of a process in a network namespace of the test's own."""

import json
import os
import re
import signal
import subprocess

import pytest
from pyroute2 import NetNS, netns

import expected
from support import (
    PID,
    ALL_INTERPRETERS,
    HOST,
    Target,
    Tracer,
    assert_nothing_left,
    run_tracer,
    semaphores,
    summary_line,
    trace_held,
)

_COLUMNS = re.compile(r"^\s*\d+\.\d{6}\s+(\d+)\s+(\d+)  (.*)$")
_ADDRESS = re.compile(r"0x[0-9a-f]+")


def events(output: str) -> list[tuple[int, int, str]]:
    """(PID, TID, the rest) of each event line."""
    return [
        (int(match.group(1)), int(match.group(2)), match.group(3))
        for match in map(_COLUMNS.match, output.splitlines())
        if match
    ]


def symbol_address(binary: str, name: str) -> int:
    """A symbol's address, as readelf reads it (the matrix's executables are not PIE)."""
    table = subprocess.run(["readelf", "--dyn-syms", "-W", binary], capture_output=True, text=True, check=True)
    (address,) = [line.split()[1] for line in table.stdout.splitlines() if line.endswith(f" {name}")]
    return int(address, 16)


def trace_audits(interpreter, *options):
    """audits.py traced by PID and let run to its end (the tracer names the types of its
    objects after it exited): (tracer exit code, stdout, stderr, the target, its stdout,
    stderr and exit code)."""
    target = Target("audits.py", interpreter=interpreter)
    code, stdout, stderr, out, err, _ = trace_held(target, "audit", PID, *options, releases=2)
    return code, stdout, stderr, target, (out, err, target.process.returncode)


def test_arguments_decoded_exactly(any_interpreter):
    code, stdout, stderr, target, result = trace_audits(any_interpreter, "--event", "pybpftrace.*")
    assert code == 0
    assert result == (b"done\n", b"", 0)  # tracing changed nothing the target does
    lines = events(stdout)
    assert {(pid, tid) for pid, tid, _ in lines} == {(target.pid, target.pid)}
    assert [_ADDRESS.sub("0x…", rest) for _, _, rest in lines] == expected.audits(any_interpreter.version)
    str_type = symbol_address(any_interpreter.host_python, "PyUnicode_Type")
    assert lines[4][2].endswith(f", <type object at {str_type:#x}>)")  # str itself, a static type
    assert re.fullmatch(
        r"pybpftrace: 7 events, 0 lost, 1 threads, \d+\.\d\d s \(target exited\)", summary_line(stderr)
    )
    assert stdout.startswith("     TIME(s)      PID      TID  EVENT ARGS\n")


def test_json_values_with_their_types_where_json_would_lose_them():
    code, stdout, _, target, _ = trace_audits(
        HOST, "--json", "--event", "pybpftrace.test", "--event", "pybpftrace.obj?cts"
    )
    assert code == 0
    test, objects = [json.loads(line) for line in stdout.splitlines()]
    assert set(test) == {"time", "pid", "tid", "event", "args"}
    assert (test["pid"], test["tid"], test["event"]) == (target.pid, target.pid, "pybpftrace.test")
    assert test["args"] == [
        "text", {"type": "bytes", "hex": "6279746573"}, 42, -7,
        {"type": "int", "value": "1267650600228229401496703205376"}, 1.5, None, ["nested", 1],
    ]
    assert [item["type"] for item in objects["args"]] == ["list", "Custom", "_io.TextIOWrapper", "type"]
    assert objects["args"][3]["address"] == hex(symbol_address(HOST.host_python, "PyUnicode_Type"))


def test_event_filter_in_the_kernel_and_nothing_left_behind():
    with Target("audits.py") as target:
        tracer = Tracer("audit", target.pid, "--event", "*.t?st", "--event", "pybpftrace.l*")
        tracer.wait_attached()
        assert {name for name, value in semaphores(target.pid).items() if value} == {"audit"}
        target.go()
        tracer.wait_output("pybpftrace.last")
        tracer.signal(signal.SIGINT)
        code, stdout, stderr = tracer.finish()
        assert_nothing_left(target.pid)  # the audit semaphore is down again
        target.go()
        assert target.finish() == (b"done\n", b"")
    assert code == 0
    assert [rest.split(" ", 1)[0] for _, _, rest in events(stdout)] == ["pybpftrace.test", "pybpftrace.last"]
    assert re.fullmatch(  # the other events never left the kernel
        r"pybpftrace: 2 events, 0 lost, 1 threads, \d+\.\d\d s \(SIGINT\)", summary_line(stderr)
    )


def test_every_version_at_once_each_by_its_own_layout():
    """--binary for all five interpreters: one program, with each binary's layout offsets in
    its own entry points (3.14 and 3.15 keep a tuple's items 8 bytes further)."""
    for interpreter in ALL_INTERPRETERS:
        interpreter.prepare()
    binaries = [option for i in ALL_INTERPRETERS for option in ("--binary", i.host_python)]
    tracer = Tracer("audit", *binaries, "--event", "pybpftrace.test")
    tracer.wait_attached()
    pids = []
    for interpreter in ALL_INTERPRETERS:
        target = Target("audits.py", interpreter=interpreter)
        pids.append(target.pid)
        target.go()
        target.go()
        assert target.finish() == (b"done\n", b"")
        tracer.wait_output(f" {target.pid}  pybpftrace.test ")
    tracer.signal(signal.SIGINT)
    code, stdout, _ = tracer.finish()
    assert code == 0
    ours = sorted((pid, rest) for pid, _, rest in events(stdout) if pid in pids)
    assert ours == [(pid, expected.audits((3, 11))[0]) for pid in sorted(pids)]


def test_launched_command_is_traced_from_its_start():
    result = run_tracer("audit", "--event", "pybpftrace.test", "--event", "cpython.run_*", "--",
                        *HOST.command("audits.py"), input=b"go\n\n")
    assert result.returncode == 0
    stdout = result.stdout.decode()
    assert stdout.count("done\n") == 1  # the target's own output, untouched
    assert [rest for _, _, rest in events(stdout)] == [
        f"cpython.run_file ('{HOST.script('audits.py')}',)",  # before any Python code ran
        expected.audits((3, 11))[0],
    ]


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory, require_tools):
    """An executable that looks like a CPython with USDT probes, but only gc ones."""
    require_tools("gcc", header="sys/sdt.h")
    source = tmp_path_factory.mktemp("fake") / "fake.c"
    source.write_text(
        "#include <sys/sdt.h>\nvoid Py_Initialize(void) {}\n"
        "int main(void) { STAP_PROBE1(python, gc__start, 0); return 0; }\n"
    )
    binary = source.with_suffix("")
    subprocess.run(["gcc", "-o", binary, source], check=True)
    return str(binary)


def test_refused_where_the_probe_is_missing(fake_python):
    result = run_tracer("audit", "--", fake_python)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"pybpftrace: CPython (version unknown) at {fake_python} has no audit probes, which pybpftrace audit "
        "needs. Its probes: gc__start. Commands that work there: list\n"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (["--event", "x" * 64], f"--event '{'x' * 64}' has 64 characters: at most 63 are matched in the kernel"),
        (["--event", ""], "--event '': a pattern is 1 to 63 characters, without NUL"),
        (["--event", "a"] * 9, "at most 8 --event patterns"),
    ],
)
def test_patterns_the_kernel_cannot_take(options, message):
    result = run_tracer("audit", "1", *options)
    assert (result.returncode, result.stdout, result.stderr.decode()) == (64, b"", f"pybpftrace: {message}\n")


LISTENER = "10.99.0.1"
PORT = "8080"


@pytest.fixture
def namespace():
    """A network namespace of the test's own, with the listener's address on its loopback;
    removed afterwards. Returns what puts a child into it."""
    name = f"pybpftrace-audit-{os.getpid()}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            (loopback,) = ns.link_lookup(ifname="lo")
            ns.link("set", index=loopback, state="up")
            ns.addr("add", index=loopback, address=LISTENER, prefixlen=32)
        yield lambda: netns.setns(name)
    finally:
        netns.remove(name)
    assert name not in netns.listnetns()


def test_which_code_opens_sockets(any_interpreter, namespace):
    listener = subprocess.Popen([*HOST.command("listener.py"), LISTENER, PORT], stdout=subprocess.PIPE,
                                preexec_fn=namespace)
    try:
        assert listener.stdout.readline() == b"listening\n"
        target = Target("connects.py", LISTENER, PORT, interpreter=any_interpreter, preexec_fn=namespace)
        code, stdout, stderr, out, err, _ = trace_held(target, "audit", PID, "--event", "socket.connect")
        assert listener.wait(timeout=10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert (code, out, err) == (0, b"pong\n", b"")
    ((pid, tid, rest),) = events(stdout)
    assert (pid, tid) == (target.pid, target.pid)
    assert re.fullmatch(rf"socket\.connect \(<socket object at 0x[0-9a-f]+>, \('{LISTENER}', {PORT}\)\)", rest)
    assert summary_line(stderr).startswith("pybpftrace: 1 events, 0 lost, 1 threads,")
