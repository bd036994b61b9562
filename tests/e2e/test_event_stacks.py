"""--stacks on gc, imports and audit: under each event, the Python stack it fired in (the code
that triggered the collection, ran the import, opened the socket); --folded aggregates events
by that stack. On every CPython of the matrix."""

import json
import subprocess
from collections import Counter

from support import HOST, PID, Target, line_of, trace_held


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def innermost_in(stack, path):
    """The innermost frame of the stack in the script at path: (function, line)."""
    for frame in stack:
        if frame["file"] == path:
            return frame["function"], frame["line"]
    return None


def test_gc_stacks_name_the_code_that_collected(any_interpreter):
    target = Target("collectors.py", interpreter=any_interpreter)
    run = trace_held(target, "gc", PID, "--stacks", "--json")
    assert run.code == 0, run.stderr
    collections = [record for record in json_lines(run.stdout) if "generation" in record]
    places = [(c["generation"], innermost_in(c["stack"], target.path)) for c in collections]
    first = ("first", line_of("collectors.py", "first collects"))
    second = ("second", line_of("collectors.py", "second collects"))
    assert places[:6] == [(0, first), (1, second)] * 3
    automatic = [place for generation, place in places[6:] if place is not None]
    assert len(automatic) >= 3 and all(place[0] == "allocate" for place in automatic), places


def test_gc_folded_weighs_pauses_by_stack(any_interpreter):
    target = Target("collectors.py", interpreter=any_interpreter)
    run = trace_held(target, "gc", PID, "--folded")
    assert run.code == 0, run.stderr
    weights = Counter()
    for line in run.stdout.splitlines():
        stack, weight = line.rsplit(" ", 1)
        weights[stack.split(";")[-1]] += int(weight)
    for function in ("first", "second"):
        label = f"{function} ({target.path}:{line_of('collectors.py', f'def {function}')})"
        assert weights[label] > 0, weights


def test_imports_stacks_name_the_importing_function(any_interpreter):
    target = Target("importer.py", interpreter=any_interpreter)
    run = trace_held(target, "imports", PID, "--stacks", "--json")
    assert run.code == 0, run.stderr
    imports = {record["module"]: record for record in json_lines(run.stdout) if "module" in record}
    load = ("load", line_of("importer.py", "load imports"))
    assert innermost_in(imports["outer_module"]["stack"], target.path) == load
    inner = imports["inner_module"]["stack"]  # imported by outer_module's own code, under load
    assert inner[0]["function"] == "<module>" and inner[0]["file"].endswith("outer_module.py")
    assert innermost_in(inner, target.path) == load


def test_audit_stacks_name_the_connecting_function(any_interpreter):
    listener = subprocess.Popen([*HOST.command("listener.py"), "127.0.0.1", "0"], stdout=subprocess.PIPE)
    try:
        port = listener.stdout.readline().split()[1].decode()
        target = Target("connects.py", "127.0.0.1", port, interpreter=any_interpreter)
        run = trace_held(target, "audit", PID, "--event", "socket.connect", "--stacks")
    finally:
        listener.wait(timeout=30)
    assert run.code == 0 and run.target_output == b"pong\n", run.stderr
    lines = run.stdout.splitlines()
    (event,) = [index for index, line in enumerate(lines) if "socket.connect (" in line]
    stack = []
    for line in lines[event + 1:]:
        if not line.startswith("    "):
            break
        stack.append(line.strip())
    main = f"main ({target.path}:{line_of('connects.py', 'main connects')})"
    assert [frame for frame in stack if target.path in frame][0] == main, stack
