"""Exact calls by either route, on every version: the function probes (USDT) or the eval-frame
route (the evaluator's uprobes, with the interpreter's eval_frame hook set on 3.11 and later).
Counts are checked against sys.setprofile's, hierarchies against the other route's; the hook
is checked to be set back however tracing ends, and refused where it would not be exact."""

import glob
import json
import re
import signal
import subprocess
import time

import pytest

import expected
from support import (
    CALL_ROUTES,
    EVAL_FRAME,
    PID,
    TIMEOUT,
    Target,
    Tracer,
    WITH_FUNCTION_PROBES,
    WITHOUT_FUNCTION_PROBES,
    calls,
    folded_weights,
    json_records,
    line_of,
    run_tracer,
    trace_held,
    wait_reading_stdin,
    weight_of,
)
from pybpftrace.guardian import HOOKS, Memory, interpreters
from pybpftrace.hook import target_of
from pybpftrace.sampling import process_interpreter

# Deep enough to pass the 128 frames kept per thread, shallow enough for 3.12 with its hook
# set (748 calls deep, measured: the hook makes each call a C call too)
DEPTH = "600"
SCRIPT = "known_calls.py"
PY313, PY314 = WITHOUT_FUNCTION_PROBES
PY315 = WITH_FUNCTION_PROBES[-1]
LABEL = re.compile(r"(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def truth(interpreter) -> dict[str, int]:
    """The workload's calls as sys.setprofile counts them, untraced: `function (first line)`."""
    result = subprocess.run(interpreter.command(SCRIPT, "--truth", DEPTH), capture_output=True, text=True,
                            timeout=TIMEOUT, check=True)
    return json.loads(result.stdout)


# The module and its class bodies: a launched command runs them, the truth (profiled from workload()) not
MODULE_LEVEL = ("<module>", "Box", "Task", "Other", "Base", "Derived")


def folded_counts(stdout: str) -> dict[str, int]:
    """Calls by `function (first line)` from folded stacks weighted by calls."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        stack, weight = line.rsplit(" ", 1)
        leaf = LABEL.match(stack.rsplit(";", 1)[-1])
        assert leaf and leaf["file"].endswith(SCRIPT), line
        if leaf["function"] not in MODULE_LEVEL:
            key = f"{leaf['function']} ({leaf['line']})"
            counts[key] = counts.get(key, 0) + int(weight)
    return counts


def calls_counts(stdout: str) -> dict[str, int]:
    """Calls by `function (first line)` from `calls --json`: the workload's functions."""
    return {f"{row['function']} ({row['line']})": row["calls"] for row in json.loads(stdout)["functions"]
            if row["file"].endswith(SCRIPT) and row["function"] not in MODULE_LEVEL and row["calls"]}


def test_calls_counted_exactly_by_pid(call_route):
    """Recursion, generators (next, send, throw, close), coroutines, __init__ and properties,
    exceptions unwinding, a second thread, recursion 600 deep: each call counted once."""
    interpreter = call_route.interpreter
    known = truth(interpreter)
    folded = trace_held(Target(SCRIPT, DEPTH, interpreter=interpreter), "stack", PID, "--folded", "--weight", "calls",
                        "--filename", SCRIPT, *call_route.options())
    counted = trace_held(Target(SCRIPT, DEPTH, interpreter=interpreter), "calls", PID, "--json", "--top", "100000",
                         *call_route.options())
    for run in (folded, counted):
        assert run.code == 0, run.stderr
        assert run.target_output == b"done\n" and run.target_errors == b""
        warned = "warning: " in run.stderr
        assert warned == (call_route.hooked and interpreter.version[:2] == (3, 12)), run.stderr
    assert folded_counts(folded.stdout) == known
    assert calls_counts(counted.stdout) == known


@pytest.mark.parametrize("interpreter", [PY313, PY314, PY315], ids=str)
def test_launched_command_counted_exactly_from_its_first_call(interpreter):
    """A launched command's hook is set at its first Python call: no --eval-hook needed."""
    interpreter.prepare()
    known = truth(interpreter)
    result = run_tracer("stack", "--folded", "--weight", "calls", "--filename", SCRIPT, "--route", EVAL_FRAME, "--",
                        *interpreter.command(SCRIPT, DEPTH), input=b"go\n")
    assert result.returncode == 0, result.stderr
    stdout = result.stdout.decode()
    assert stdout.startswith("done\n")  # the target's own output, untouched
    assert folded_counts(stdout.removeprefix("done\n")) == known
    # from its first call: the main thread's stacks start at its module (the other's at worker:
    # threading's frames are filtered out)
    path = interpreter.script(SCRIPT)
    roots = {line.rsplit(" ", 1)[0].split(";")[0] for line in stdout.splitlines()[1:]}
    assert roots == {f"<module> ({path}:1)", f"worker ({path}:{line_of(SCRIPT, 'def worker')})"}


@pytest.mark.parametrize("name", ["features.py", "calls.py"])
def test_both_routes_draw_the_same_hierarchy(name):
    """CPython 3.15 has function probes and an evaluator to probe: the same calls either way."""
    PY315.prepare()
    lines = {}
    for route in ("usdt", EVAL_FRAME):
        result = run_tracer("stack", "--filename", name, "--route", route, "--", *PY315.command(name), input=b"go\n")
        assert result.returncode == 0, result.stderr
        lines[route] = calls(result.stdout.decode())
    assert lines[EVAL_FRAME] == lines["usdt"]
    if name == "features.py":
        assert lines["usdt"] == expected.features(PY315.script(name), PY315.version, launched=True)


def test_attached_stack_starts_at_the_module(call_route):
    """Attached mid-stack, the frames already running are read from memory: the trace starts
    at <module>. On the eval-frame route they have no return probe (the kernel places one as a
    call begins): their returns are noticed once they happened, at the next call or when the
    thread ends."""
    run = trace_held(Target("midstack.py", interpreter=call_route.interpreter), "stack", PID, "--filename",
                     "midstack.py", "--durations", "--json", *call_route.options())
    assert run.code == 0, run.stderr
    assert run.target_output == b"3\n"
    events = json_records(run.stdout)
    eval_frame = call_route.route == EVAL_FRAME
    assert [(e["event"], e["depth"], e["function"], e["line"], "duration_ns" in e, e.get("note")) for e in events] == (
        expected.midstack(run.path, returns_seen=not eval_frame)
    )
    assert ("[4 returns seen late (" in run.stderr) == eval_frame


@pytest.mark.parametrize("route", [r for r in CALL_ROUTES if r.interpreter.version >= (3, 13)], ids=str)
def test_attached_while_objects_are_made(route):
    """Attached by PID to a loop making objects through 3.13+'s specialized class call (3.15's
    shim frame under each __init__): every stack starts at <module>, the tree stays the loop's
    few paths, and no shim is ever taken for a call."""
    route.interpreter.prepare()
    with Target("creating.py", interpreter=route.interpreter) as target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("stack", target.pid, "--folded", "--weight", "calls", "--duration", "1",
                            *route.options())
        assert result.returncode == 0, result.stderr
        target.process.stdin.close()
        assert target.process.wait(TIMEOUT) == 0
    weights = folded_weights(result.stdout.decode())
    path = route.interpreter.script("creating.py")
    init = f"__init__ ({path}:{line_of('creating.py', 'def __init__')})"
    assert weights and all(stack.startswith(f"<module> ({path}:1)") for stack in weights), list(weights)
    assert len(weights) <= 6 and all(stack.count(";") <= 4 for stack in weights), list(weights)
    assert weight_of(weights, init) > 0 and not [stack for stack in weights if "(__init__" in stack]


@pytest.mark.parametrize("route", [r for r in CALL_ROUTES if r.interpreter.version in ((3, 11), (3, 13))], ids=str)
def test_calls_open_at_the_end_keep_their_time(route):
    """The module's frame began before tracing and still runs when tracing stops: counted as
    both (`0+1`), its time while traced in TOTAL, and said so under the table."""
    route.interpreter.prepare()
    with Target("creating.py", interpreter=route.interpreter) as target:
        assert target.process.stdout.readline() == b"ready\n"
        listed = run_tracer("calls", target.pid, "--duration", "1", *route.options())
        counted = run_tracer("calls", target.pid, "--json", "--duration", "1", *route.options())
        target.process.stdin.close()
        assert target.process.wait(TIMEOUT) == 0
    assert listed.returncode == counted.returncode == 0, (listed.stderr, counted.stderr)
    path = route.interpreter.script("creating.py")
    (module,) = [row for row in json.loads(counted.stdout)["functions"]
                 if (row["function"], row["file"]) == ("<module>", path)]
    traced = float(re.search(r", ([\d.]+) s \(duration\)", counted.stderr.decode()).group(1))
    assert (module["calls"], module["partial_calls"], module["running_calls"]) == (0, 1, 1)
    assert 0 < module["total_ns"] <= (traced + 0.005) * 1e9 and module["timed_total_ns"] == 0  # traced: to 0.01 s
    (row,) = [line for line in listed.stdout.decode().splitlines() if line.endswith(f"<module> ({path}:1)")]
    assert row.split()[0] == "0+1"
    assert re.search(r"\(\+N: calls that began before tracing, \d+ in all; TOTAL and SELF include the time while "
                     r"traced of those and of the \d+ calls still running when tracing stopped", listed.stdout.decode())


def eval_frame_hooks(pid: int) -> list[int]:
    """What each interpreter of the process has as its eval_frame hook (0: CPython's own)."""
    walked = process_interpreter(pid)
    target = target_of(pid, walked)
    memory = Memory(pid)
    try:
        return [memory.pointer(interp + target.field) for interp in interpreters(memory, target)]
    finally:
        memory.close()


def test_killed_tracer_leaves_the_hook_set_back():
    """SIGKILL gives the tracer no time to clean up: its guardian sets the hook back."""
    PY313.prepare()
    with Target("calls.py", interpreter=PY313) as target:
        wait_reading_stdin(target.pid)
        assert eval_frame_hooks(target.pid) == [0]
        tracer = Tracer("stack", target.pid, "--eval-hook", "-o", "/dev/null")
        tracer.wait_attached()
        assert all(eval_frame_hooks(target.pid))
        tracer.signal(signal.SIGKILL)
        tracer.finish()
        deadline = time.monotonic() + TIMEOUT
        while eval_frame_hooks(target.pid) != [0]:
            assert time.monotonic() < deadline, "the hook was never set back"
            time.sleep(0.05)
        target.go()
        out, errors = target.finish()
    assert (out, errors) == (b"14\n", b"")


@pytest.mark.parametrize("how", ["followed", "not followed", "tracer killed"])
def test_children_forked_while_hooked_have_it_set_back(how):
    """A child forked while its parent's hook is set inherits it with the memory: it is set
    back too, whether the child was traced (--follow-forks) or not, and by the guardian when
    the tracer is killed."""
    PY313.prepare()
    with Target("forks_held.py", interpreter=PY313) as target:
        wait_reading_stdin(target.pid)
        follow = ["--follow-forks"] if how == "followed" else []
        tracer = Tracer("stack", target.pid, "--eval-hook", *follow, "-o", "/dev/null")
        tracer.wait_attached()
        target.go()
        child = int(target.process.stdout.readline())
        assert all(eval_frame_hooks(child))  # inherited
        wait_held(child)  # the tracer has heard of the fork (else a SIGKILL now leaves it, unknown to the guardian)
        tracer.signal(signal.SIGKILL if how == "tracer killed" else signal.SIGINT)
        code, _, stderr = tracer.finish()
        deadline = time.monotonic() + TIMEOUT
        while eval_frame_hooks(target.pid) + eval_frame_hooks(child) != [0, 0]:
            assert time.monotonic() < deadline, "a hook was never set back"
            time.sleep(0.05)
        assert code == (-signal.SIGKILL if how == "tracer killed" else 0), stderr
        target.process.stdin.close()
        assert target.process.wait(TIMEOUT) == 0


def wait_held(pid: int) -> None:
    """Until a tracer holds pid's hook (its holders' directory is there)."""
    deadline = time.monotonic() + TIMEOUT
    while not glob.glob(f"{HOOKS}/{pid}-*/*"):
        assert time.monotonic() < deadline, f"no tracer came to hold PID {pid}'s hook"
        time.sleep(0.01)


def test_by_pid_the_hook_must_be_allowed():
    PY313.prepare()
    with Target("calls.py", interpreter=PY313) as target:
        wait_reading_stdin(target.pid)
        result = run_tracer("stack", target.pid)
        assert eval_frame_hooks(target.pid) == [0]
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line == (
        f"pybpftrace: CPython 3.13.5 at {PY313.host_python} has no function probes (CPython 3.12 removed the "
        "function probes when PEP 669 monitoring replaced the interpreter's tracing hooks, and 3.15 restored them); "
        "to follow its calls pybpftrace must set the interpreter's eval_frame hook (one pointer in each interpreter, "
        "set back when tracing ends, however it ends), which --eval-hook allows; pybpftrace profile samples where "
        "the time goes and writes nothing"
    )


REFUSALS = {
    "jit": (["env", "PYTHON_JIT=1"], [], re.escape(
        "its JIT is on (PYTHON_JIT=1), and JIT-compiled code calls no evaluator: trace it without the JIT")),
    "remote-debug-off": ([], ["-X", "disable-remote-debug"], re.escape(
        "it opted out of remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug), and pybpftrace "
        "does not write into such a process")),
    "perf-trampoline": ([], ["-X", "perf"], re.escape("its eval_frame hook is another tool's evaluator (")
                        + "0x[0-9a-f]+" + re.escape(": a perf trampoline, a debugger or a JIT such as torch's dynamo), "
                                                    "which pybpftrace never replaces")),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_hook_refused_where_the_route_would_not_be_exact(case):
    """CPython 3.14 with its JIT on, opted out of remote debugging, or with another evaluator
    (perf's trampoline) in its hook: exit code 10, the process untouched."""
    before, options, why = REFUSALS[case]
    PY314.prepare()
    command = ["chroot", PY314.root, *before, PY314.python, *options, PY314.script("calls.py")]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_reading_stdin(process.pid)
        hooks = eval_frame_hooks(process.pid)
        result = run_tracer("stack", process.pid, "--eval-hook")
        assert eval_frame_hooks(process.pid) == hooks
        out, errors = process.communicate(b"go\n", timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
    assert result.returncode == 10
    (line,) = result.stderr.decode().splitlines()
    prefix = re.escape(f"pybpftrace: PID {process.pid} (CPython 3.14.10 at {PY314.host_python}): ")
    assert re.fullmatch(prefix + why, line), line
    assert (out, errors) == (b"14\n", b"")
