"""gc, imports, lines, calls and top against real processes, on every matrix version where
their probes exist, and their refusals where they do not."""

import json
import os
from collections import Counter
import pty
import re
import select
import subprocess
import time

import pytest

from conftest import WITH_LINE_PROBE
from support import (
    PID,
    HOST,
    TIMEOUT,
    WITH_FUNCTION_PROBES,
    WITHOUT_FUNCTION_PROBES,
    Target,
    Tracer,
    line_of,
    pybpftrace_command,
    run_tracer,
    summary_line,
    trace_held,
)


def attach_and_run(interpreter, name, *arguments):
    """Trace a held script by PID with `arguments` (a command and its options); the tracer's
    (exit code, stdout, stderr)."""
    return attach_and_run_target(Target(name, interpreter=interpreter), *arguments)


def attach_and_run_target(target, *arguments):
    run = trace_held(target, arguments[0], PID, *arguments[1:])
    return run.code, run.stdout, run.stderr


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# gc ------------------------------------------------------------------------------------------


def test_gc_generations_and_collected(any_interpreter):
    code, stdout, stderr = attach_and_run(any_interpreter, "collect.py", "gc", "--json")
    assert code == 0
    records = json_lines(stdout)
    collections = [r for r in records if "generation" in r]
    # gc.collect(0), (1), (2), then a full collection that finds the one-object cycle; the
    # interpreter's own collections at exit come after
    assert [(c["generation"], c["collected"]) for c in collections[:4]] == [(0, 0), (1, 0), (2, 0), (2, 1)]
    assert all(c["pause_ns"] > 0 for c in collections)
    (summary,) = [r["summary"] for r in records if "summary" in r]
    per_generation = {row["generation"]: row["collections"] for row in summary}
    assert per_generation[0] == 1 and per_generation[1] == 1 and per_generation[2] >= 2
    assert summary_line(stderr).startswith(f"pybpftrace: {len(collections)} events, 0 lost, 1 threads,")


def test_gc_text_summary_and_histogram():
    code, stdout, _ = attach_and_run(HOST, "collect.py", "gc")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == "     TIME(s)      PID      TID GEN        PAUSE COLLECTED"
    assert [line.split()[3] for line in lines[1:5]] == ["0", "1", "2", "2"]
    assert [line.split()[-1] for line in lines[1:5]] == ["0", "0", "0", "1"]
    assert "GEN COLLECTIONS  TOTAL PAUSE         MEAN          MAX COLLECTED" in lines
    assert "GC pauses" in lines and any(re.match(r"\s+\d+ -> \d+\s+: \d+\s+\|\*+", line) for line in lines)


# imports -------------------------------------------------------------------------------------


def test_imports_nesting_durations_and_failures(any_interpreter):
    code, stdout, _ = attach_and_run(any_interpreter, "importer.py", "imports", "--json")
    assert code == 0
    records = json_lines(stdout)
    events = [(r["module"], r["depth"], r["found"]) for r in records if "module" in r]
    assert events == [("inner_module", 1, True), ("outer_module", 0, True), ("no_such_module_pybpftrace", 0, False)]
    assert all(r["duration_ns"] > 0 for r in records if "module" in r)
    (tree,) = [r["tree"] for r in records if "tree" in r]
    outer = next(node for node in tree if node["module"] == "outer_module")
    assert [child["module"] for child in outer["imports"]] == ["inner_module"]
    assert outer["self_ns"] == outer["duration_ns"] - outer["imports"][0]["duration_ns"]


def test_imports_text_tree_slowest_first():
    code, stdout, _ = attach_and_run(HOST, "importer.py", "imports")
    assert code == 0
    stream, tree = stdout.split("\nImports, slowest first\n")
    assert re.search(r"^ +\d+\.\d+ +\d+ +\d+ +\d+\.\d{3} [um]s +\d+\.\d{3} [um]s    inner_module$", stream, re.M)
    assert re.search(r"  no_such_module_pybpftrace \(not found\)$", stream, re.M)
    modules = [line[27:] for line in tree.splitlines()[1:]]  # after CUMULATIVE and SELF
    assert modules.index("  inner_module") == modules.index("outer_module") + 1


# lines ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpreter", WITH_LINE_PROBE, ids=str)
def test_lines_stream_reproduces_the_line_sequence(interpreter):
    interpreter.prepare()
    code, stdout, _ = attach_and_run(interpreter, "looping.py", "lines", "--stream", "--filename", "looping.py")
    assert code == 0
    line = lambda marker: line_of("looping.py", marker)  # noqa: E731
    seen = [re.sub(r"^\s*\d+\.\d+\s+\d+  .*?:", "", text) for text in stdout.splitlines()[1:]]
    iteration = [f"{line('main calls')} (main)", f"{line('double body')} (double)",
                 f"{line('double returns')} (double)", f"{line('main loops')} (main)"]
    assert seen == [
        f"{line('module ends')} (<module>)",
        f"{line('main starts')} (main)",
        f"{line('main loops')} (main)",
        *iteration,
        *iteration,
        f"{line('main returns')} (main)",
    ]


@pytest.mark.parametrize("interpreter", WITH_LINE_PROBE, ids=str)
def test_hot_lines_are_counted_in_the_kernel(interpreter):
    interpreter.prepare()
    code, stdout, stderr = attach_and_run(interpreter, "looping.py", "lines", "--json", "--filename", "looping.py")
    assert code == 0
    (counts,) = [r["lines"] for r in json_lines(stdout)]
    line = lambda marker: line_of("looping.py", marker)  # noqa: E731
    assert {(c["line"], c["function"]): c["count"] for c in counts} == {
        (line("module ends"), "<module>"): 1, (line("main starts"), "main"): 1, (line("main loops"), "main"): 3,
        (line("main calls"), "main"): 2, (line("double body"), "double"): 2, (line("double returns"), "double"): 2,
        (line("main returns"), "main"): 1,
    }
    assert [c["count"] for c in counts] == sorted((c["count"] for c in counts), reverse=True)
    assert re.fullmatch(r"pybpftrace: \d+ events, 0 lost, \d+\.\d\d s \(target exited\)", summary_line(stderr))


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES[2:] + WITHOUT_FUNCTION_PROBES, ids=str)
def test_lines_refused_without_the_line_probe(interpreter):
    interpreter.prepare()
    with Target("looping.py", interpreter=interpreter) as target:
        result = run_tracer("lines", target.pid)
    assert result.returncode == 2
    (message,) = result.stderr.decode().splitlines()
    assert message.endswith(
        "has no line probes, which pybpftrace lines needs (CPython 3.12 removed the line probe with "
        f"PEP 669, and 3.15 did not restore it). Its probes: {', '.join(probes_of(interpreter))}. "
        f"Commands that work there: {', '.join(working_commands(interpreter))}"
    )


def probes_of(interpreter):
    from pybpftrace.target import inspect_binary

    return sorted(set(inspect_binary(interpreter.host_python).probes.names()))


def working_commands(interpreter):
    functions = interpreter.version >= (3, 15)
    return [c for c in ("list", "stack", "gc", "imports", "calls", "audit") if functions or c not in ("stack", "calls")
            ] + ["profile", "dump", "top"]


# calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_calls_counts_and_times(interpreter):
    interpreter.prepare()
    code, stdout, stderr = attach_and_run(interpreter, "features.py", "calls", "--json", "--top", "1000")
    assert code == 0
    (functions,) = [r["functions"] for r in json_lines(stdout)]
    path = interpreter.script("features.py")
    mine = {f["function"]: f for f in functions if f["file"] == path}
    # each generator resumption is a call; 3.15's creation entry is not
    expected = {"main": 1, "catcher": 1, "relay": 1, "fail": 1, "consume": 1, "numbers": 3, "drive": 1,
                "parent": 1, "child": 1, "wrapper": 1, "decorated": 1}
    assert {name: f["calls"] for name, f in mine.items() if name in expected} == expected
    for name, stats in mine.items():
        if name in expected:
            assert stats["timed_calls"] == stats["calls"], name
            assert 0 < stats["self_ns"] <= stats["total_ns"], name
            assert stats["max_ns"] <= stats["total_ns"] and stats["p50_ns"] <= stats["max_ns"], name
            assert sum(stats["histogram_log2_ns"].values()) == stats["calls"], name
            assert stats["line"] == line_of("features.py", f"def {name}"), name
    main = mine["main"]
    assert main["total_ns"] >= sum(mine[name]["total_ns"] for name in ("catcher", "consume", "drive", "wrapper"))
    assert "threads" not in summary_line(stderr)


def test_calls_table_and_histogram():
    code, stdout, _ = attach_and_run(HOST, "calls.py", "calls", "--sort", "calls", "--top", "3")
    assert code == 0
    header, *rows = stdout.splitlines()
    assert header.split() == ["CALLS", "TOTAL", "SELF", "MEAN", "P50~", "P99~", "MAX", "PID", "FUNCTION"]
    assert len(rows) == 3
    code, stdout, _ = attach_and_run(HOST, "calls.py", "calls", "--histogram", "leaf")
    assert code == 0
    assert stdout.startswith(f"leaf ({HOST.script('calls.py')}:{line_of('calls.py', 'def leaf')}) in PID ")
    assert ": 3 timed calls of 3\n" in stdout
    counts = [int(line.split(":")[1].split()[0]) for line in stdout.splitlines() if "->" in line]
    assert sum(counts) == 3


@pytest.mark.parametrize("interpreter", WITHOUT_FUNCTION_PROBES, ids=str)
def test_calls_by_pid_needs_the_hook_allowed_without_function_probes(interpreter):
    interpreter.prepare()
    with Target("calls.py", interpreter=interpreter) as target:
        result = run_tracer("calls", target.pid)
    assert result.returncode == 2
    assert result.stderr.decode().endswith(
        "which --eval-hook allows; pybpftrace profile samples where the time goes and writes nothing\n")


# top -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_top_counts_entries(interpreter):
    interpreter.prepare()
    code, stdout, _ = attach_and_run(interpreter, "features.py", "top", "--json", "--top", "1000")
    assert code == 0
    counts = {}
    for record in json_lines(stdout):
        for row in record["functions"]:
            if row["file"] == interpreter.script("features.py") and row["calls"]:  # not rows of samples alone
                counts[row["function"]] = counts.get(row["function"], 0) + row["calls"]
    # each generator resumption is an entry; 3.15's creation entries are taken back
    assert counts == {"main": 1, "catcher": 1, "relay": 1, "fail": 1, "consume": 1, "numbers": 3, "drive": 1,
                      "parent": 1, "child": 1, "wrapper": 1, "decorated": 1}


@pytest.mark.parametrize("interpreter", [HOST, *WITHOUT_FUNCTION_PROBES], ids=str)
def test_top_shows_where_time_goes_on_every_python(interpreter):
    """Own and total shares of the samples: spin is where the time is spent (own), each of
    func_a, func_b and func_c holds its share of it (total); calls only where probes are."""
    interpreter.prepare()
    target = Target("shares.py", "3", interpreter=interpreter)
    code, stdout, _ = attach_and_run_target(target, "top", "--json", "--interval", "1", "--top", "50")
    assert code == 0
    own, total, samples = Counter(), Counter(), 0
    for record in json_lines(stdout):
        samples += record["samples"]
        for row in record["functions"]:
            if row["file"] == target.path:
                own[row["function"]] += row["own"]
                total[row["function"]] += row["total"]
                assert ("calls" in row) == (interpreter.version < (3, 12))
    assert own["spin"] >= 0.9 * samples
    functions = sum(total[f] for f in ("func_a", "func_b", "func_c"))
    for function, expected in (("func_a", 0.5), ("func_b", 0.3), ("func_c", 0.2)):
        assert total[function] / functions == pytest.approx(expected, abs=0.05), total


def test_top_once_prints_one_table():
    with Target("forever.py") as target:
        result = run_tracer("top", target.pid, "--once", "--interval", "0.5", "--top", "3")
        assert target.process.poll() is None
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.count(" samples in the last ") == 1
    assert "     PID   %OWN %TOTAL   OWN(s) TOTAL(s)      CALLS  FUNCTION (FILE:LINE)\n" in text
    number = r" +\d+\.\d+"
    assert re.search(rf"^ +{target.pid}{number * 4} +\d+  tick \({re.escape(HOST.script('forever.py'))}:"
                     rf"{line_of('forever.py', 'def tick')}\)$", text, re.M)
    assert summary_line(result.stderr.decode()).endswith("(done)")


def test_top_once_over_a_shorter_run_covers_the_run():
    """A target exiting before the interval ends: the one table says the time it covers."""
    result = run_tracer("top", "--once", "--interval", "30", "--json", "--", *HOST.command("calls.py"), input=b"go\n")
    assert result.returncode == 0
    (record,) = json_lines(result.stdout.decode())
    traced = float(re.search(r"([\d.]+) s \(target exited\)", summary_line(result.stderr.decode())).group(1))
    assert abs(record["seconds"] - traced) < 0.01


def test_top_live_screen_quits_on_q():
    target = Target("forever.py")
    controller, terminal = pty.openpty()
    try:
        tracer = subprocess.Popen(pybpftrace_command("top", target.pid), stdin=terminal, stdout=terminal,
                                  stderr=subprocess.PIPE, env=dict(os.environ, TERM="xterm", LINES="24", COLUMNS="100"))
        os.close(terminal)
        screen = read_until(controller, b"(q to quit)", timeout=TIMEOUT)  # compiling may be slow (a VM)
        screen += read_until(controller, b"tick (", timeout=10)
        os.write(controller, b"q")
        assert tracer.wait(timeout=10) == 0
        assert b"pybpftrace: " in tracer.stderr.read()
    finally:
        os.close(controller)
        target.kill()


def read_until(fd, marker, timeout):
    data, deadline = b"", time.monotonic() + timeout
    while marker not in data:
        assert time.monotonic() < deadline, data[-500:]
        if select.select([fd], [], [], 0.2)[0]:
            data += os.read(fd, 65536)
    return data


# every process of a binary -------------------------------------------------------------------


@pytest.mark.parametrize("selector", [["--binary", HOST.host_python], ["--all"]], ids=["binary", "all"])
def test_every_process_of_a_binary_including_later_ones(selector):
    # --all covers the CPythons installed here or mapped at its start: one in a chroot (the
    # default 3.11 on Debian 13) must be running when it starts.
    running = Target("calls.py") if HOST.suite and "--all" in selector else None
    tracer = Tracer("stack", *selector, "--json", "--filename", "calls.py", "--duration", "20")
    target = None
    try:  # a target that fails to start stops the tracer too: --all traces every Python here
        tracer.wait_attached()
        target = Target("calls.py")  # started after the tracer
        target.go()
        assert target.finish()[0] == b"14\n"
    finally:
        for process in (target, running):
            if process:
                process.kill()
        tracer.signal()
    code, stdout, stderr = tracer.finish()
    assert code == 0
    events = json_lines(stdout)
    assert {e["pid"] for e in events} == {target.pid}  # never the tracer's own calls
    assert [(e["event"], e["function"]) for e in events if e["function"] != "<module>"][:2] == [
        ("call", "top"), ("call", "middle")]
    assert f"CPython 3.11.2 at {HOST.host_python}" in stderr.split("tracing every process running ", 1)[1]


# Where another pybpftrace's work shows: its run loop, which starts a second or more (its
# program compiled) after it said it is a tracer, before it imported the rest of itself.
RUN_LOOP = ("run", "pybpftrace/session.py")


def _functions_by_process(command: str, stdout: str) -> dict[int, set[tuple[str, str]]]:
    """(function, file) of each process's frames (profile --json) or rows (calls --json)."""
    found: dict[int, set[tuple[str, str]]] = {}
    if command == "profile":
        for stack in json.loads(stdout)["stacks"]:
            found.setdefault(stack["pid"], set()).update(
                (frame["function"], frame["file"] or "") for frame in stack["frames"])
    else:
        for record in json_lines(stdout):
            for row in record["functions"]:
                found.setdefault(row["pid"], set()).add((row["function"], row["file"]))
    return found


@pytest.mark.parametrize("command", [("profile", "--json"), ("calls", "--json", "--top", "1000000")],
                         ids=["profile", "calls"])
def test_all_leaves_other_tracers_out(command):
    """--all reads every Python but another pybpftrace's: one running when it starts is never
    read, and one started later only until it says it is a tracer (a moment), never its work,
    which would otherwise be traced, and trace the first one's, without end."""
    with Target("forever.py") as target:
        before = Tracer("stack", target.pid, "--folded", "-o", "/dev/null")
        tracer = later = None
        try:
            before.wait_attached()
            tracer = Tracer(command[0], "--all", *command[1:])
            tracer.wait_attached()
            later = Tracer("stack", target.pid, "--folded", "-o", "/dev/null")
            later.wait_attached()
            tracer.signal()
            code, stdout, stderr = tracer.finish()
        finally:
            for other in filter(None, (before, tracer, later)):
                other.signal()
                other.finish()
    assert code == 0, stderr
    found = _functions_by_process(command[0], stdout)
    assert target.pid in found and before.process.pid not in found, sorted(found)
    function, file = RUN_LOOP
    assert not [(name, path) for name, path in found.get(later.process.pid, ()) if name == function and path.endswith(file)]
    assert f"found PID {before.process.pid} " not in stderr
    if f"found PID {later.process.pid} " in stderr:  # found before it said it is a tracer
        assert f"PID {later.process.pid} is another pybpftrace: its stacks are no longer read" in stderr


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_calls_where_returns_have_no_entry(interpreter):
    interpreter.prepare()
    code, stdout, _ = attach_and_run(interpreter, "resumes.py", "calls", "--json", "--top", "1000")
    assert code == 0
    (functions,) = [r["functions"] for r in json_lines(stdout)]
    assert not [f for f in functions if f["file"] == "__init__"]  # 3.15's shim frame is no call
    mine = {f["function"]: f for f in functions if f["file"] == interpreter.script("resumes.py")}
    assert (mine["__init__"]["calls"], mine["__init__"]["timed_calls"]) == (50, 50)
    # managed returns twice: at its yield, and when the exception thrown into it is caught;
    # 3.15 resumes it in throw() without an entry, so that second call has no duration
    assert (mine["managed"]["calls"], mine["managed"]["timed_calls"]) == (2, 1 if interpreter.version >= (3, 15) else 2)
