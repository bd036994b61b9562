"""`pybpftrace stack` against real CPython 3.11 processes: exact call hierarchies."""

import json
import re

import pytest

from support import (
    PYTHON311,
    Target,
    Tracer,
    calls,
    calls_by_thread,
    line_of,
    run_tracer,
    script,
    summary_line,
)


def frame(name, function, marker):
    return f"{function} ({script(name)}:{line_of(name, marker)})"


def attach_and_run(name, *options, args=()):
    """Trace a held script by PID, let it run, return (tracer exit code, stdout, stderr, the
    target's stdout)."""
    target = Target(name, *args)
    try:
        tracer = Tracer("stack", target.pid, "--filename", name, *options)
        tracer.wait_attached()
        target.go()
        out, _ = target.finish()
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
    return code, stdout, stderr, out


def test_known_hierarchy_attached_by_pid():
    code, stdout, stderr, out = attach_and_run("calls.py")
    f = lambda function, marker: frame("calls.py", function, marker)  # noqa: E731
    assert calls(stdout) == [
        f"=> {f('top', 'def top')}",
        f"  => {f('middle', 'def middle')}",
        f"    => {f('leaf', 'def leaf')}",
        f"    <= {f('leaf', 'leaf returns')}",
        f"    => {f('leaf', 'def leaf')}",
        f"    <= {f('leaf', 'leaf returns')}",
        f"  <= {f('middle', 'middle returns')}",
        f"  => {f('leaf', 'def leaf')}",
        f"  <= {f('leaf', 'leaf returns')}",
        f"<= {f('top', 'top returns')}",
        f"<= {f('<module>', 'module ends')}",  # began before tracing
    ]
    assert out == b"14\n"
    assert code == 0
    assert summary_line(stderr).endswith("(target exited)")
    assert re.fullmatch(r"pybpftrace: \d+ events, 0 lost, 1 threads, \d+\.\d\d s \(target exited\)", summary_line(stderr))


def test_launched_command_from_its_first_call_with_durations():
    result = run_tracer("stack", "--filename", "calls.py", "--durations", "--", PYTHON311, script("calls.py"))
    assert result.returncode == 0
    lines = calls(result.stdout.decode())
    duration = r" \[\d+\.\d{3} (us|ms)\]"
    f = lambda function, marker: re.escape(frame("calls.py", function, marker))  # noqa: E731
    expected = [
        f"=> {re.escape(script('calls.py'))}".replace(re.escape(script("calls.py")), f"<module> \\({re.escape(script('calls.py'))}:0\\)"),
        f"  => {f('top', 'def top')}",
        f"    => {f('middle', 'def middle')}",
        f"      => {f('leaf', 'def leaf')}",
        f"      <= {f('leaf', 'leaf returns')}{duration}",
        f"      => {f('leaf', 'def leaf')}",
        f"      <= {f('leaf', 'leaf returns')}{duration}",
        f"    <= {f('middle', 'middle returns')}{duration}",
        f"    => {f('leaf', 'def leaf')}",
        f"    <= {f('leaf', 'leaf returns')}{duration}",
        f"  <= {f('top', 'top returns')}{duration}",
        f"<= {f('<module>', 'module ends')}{duration}",
    ]
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert result.stdout.decode().startswith("     TIME(s)      TID  CALL\n")


def test_exceptions_generators_coroutines_and_decorators():
    result = run_tracer("stack", "--filename", "features.py", "--", PYTHON311, script("features.py"))
    assert result.returncode == 0
    f = lambda function, marker: frame("features.py", function, marker)  # noqa: E731
    assert calls(result.stdout.decode()) == [
        f"=> <module> ({script('features.py')}:0)",
        f"  => {f('traced', 'def traced')}",
        f"  <= {f('traced', 'traced returns')}",
        f"  => {f('main', 'def main')}",
        f"    => {f('catcher', 'def catcher')}",
        f"      => {f('relay', 'def relay')}",
        f"        => {f('fail', 'def fail')}",
        f"        <= {f('fail', 'fail raises')}",  # unwinding fires function__return too
        f"      <= {f('relay', 'relay unwinds')}",
        f"    <= {f('catcher', 'catcher returns')}",
        f"    => {f('consume', 'def consume')}",
        f"      => {f('numbers', 'def numbers')}",  # each resumption is a call
        f"      <= {f('numbers', 'numbers yields')}",
        f"      => {f('numbers', 'numbers yields')}",
        f"      <= {f('numbers', 'numbers yields')}",
        f"      => {f('numbers', 'numbers yields')}",
        f"      <= {f('numbers', 'numbers loop')}",
        f"    <= {f('consume', 'consume returns')}",
        f"    => {f('drive', 'def drive')}",
        f"      => {f('parent', 'def parent')}",
        f"        => {f('child', 'def child')}",
        f"        <= {f('child', 'child returns')}",
        f"      <= {f('parent', 'parent returns')}",
        f"    <= {f('drive', 'drive returns')}",
        f"    => {f('wrapper', 'def wrapper')}",
        f"      => {f('decorated', 'def decorated')}",
        f"      <= {f('decorated', 'decorated returns')}",
        f"    <= {f('wrapper', 'wrapper returns')}",
        f"  <= {f('main', 'main returns')}",
        f"<= {f('<module>', 'module ends')}",
    ]
    assert result.stdout.decode().count("done\n") == 1  # the target's own output, untouched


def test_attach_in_the_middle_of_a_deep_stack():
    target = Target("midstack.py")
    try:
        tracer = Tracer("stack", target.pid, "--filename", "midstack.py", "--durations", "--json")
        tracer.wait_attached()
        target.go()
        out, _ = target.finish()
        code, stdout, _ = tracer.finish()
    finally:
        target.kill()
    assert code == 0 and out == b"3\n"
    events = [json.loads(line) for line in stdout.splitlines()]
    f = lambda marker: line_of("midstack.py", marker)  # noqa: E731
    assert [(e["event"], e["depth"], e["function"], e["line"], "duration_ns" in e) for e in events] == [
        ("call", 0, "helper", f("def helper"), False),
        ("return", 0, "helper", f("helper returns"), True),
        ("return", -1, "waiting", f("waiting returns"), False),  # entered before tracing
        ("call", -1, "sibling", f("def sibling"), False),
        ("return", -1, "sibling", f("sibling returns"), True),
        ("return", -2, "inner", f("inner returns"), False),
        ("return", -3, "outer", f("outer returns"), False),
        ("return", -4, "<module>", f("module ends"), False),
    ]
    assert {e["file"] for e in events} == {script("midstack.py")}
    assert len({e["tid"] for e in events}) == 1


def test_midstack_text_marks_calls_that_began_before_tracing():
    code, stdout, _, _ = attach_and_run("midstack.py", "--durations")
    assert code == 0
    lines = calls(stdout)
    assert lines[2] == f"<= {frame('midstack.py', 'waiting', 'waiting returns')} [began before tracing]"
    assert all(not line.startswith(" ") for line in lines)  # shallowest frames so far: no indent


def test_threads_interleave_and_pair_per_thread():
    code, stdout, stderr, out = attach_and_run("threads.py")
    assert code == 0 and out == b"[0, 1, 3, 6]\n"
    threads = calls_by_thread(stdout)
    workers = {tid: lines for tid, lines in threads.items() if any("worker" in line for line in lines)}
    assert len(workers) == 4
    f = lambda function, marker: frame("threads.py", function, marker)  # noqa: E731
    seen_counts = []
    for lines in workers.values():
        # Each worker: worker -> work -> (<genexpr> -> step)* under threading's frames,
        # indented by its real depth below the hidden threading frames.
        base = len(lines[0]) - len(lines[0].lstrip())
        normalized = [line[base:] for line in lines]
        count = sum(1 for line in normalized if line.startswith("      => step"))
        seen_counts.append(count)
        expected = [f"=> {f('worker', 'def worker')}", f"  => {f('work', 'def work')}"]
        expected += [f"    => <genexpr> ({script('threads.py')}:{line_of('threads.py', 'work returns')})"]
        for _ in range(count):
            expected += [
                f"      => {f('step', 'def step')}",
                f"      <= {f('step', 'step returns')}",
                f"    <= <genexpr> ({script('threads.py')}:{line_of('threads.py', 'work returns')})",
                f"    => <genexpr> ({script('threads.py')}:{line_of('threads.py', 'work returns')})",
            ]
        expected += [
            f"    <= <genexpr> ({script('threads.py')}:{line_of('threads.py', 'work returns')})",
            f"  <= {f('work', 'work returns')}",
            f"<= {f('worker', 'worker returns')}",
        ]
        assert normalized == expected
    assert sorted(seen_counts) == [1, 2, 3, 4]
    assert re.search(r", 0 lost, 5 threads,", summary_line(stderr))


def test_recursion_deeper_than_any_fixed_buffer():
    depth = 3000
    target = Target("recursion.py", str(depth))
    try:
        tracer = Tracer("stack", target.pid, "--filename", "recursion.py", "--json")
        tracer.wait_attached()
        target.go()
        out, _ = target.finish()
        code, stdout, _ = tracer.finish()
    finally:
        target.kill()
    assert code == 0 and out == f"{depth}\n".encode()
    events = [json.loads(line) for line in stdout.splitlines() if '"down"' in line]
    calls_ = [e["depth"] for e in events if e["event"] == "call"]
    returns = [e["depth"] for e in events if e["event"] == "return"]
    assert calls_ == list(range(depth + 1))
    assert returns == list(range(depth, -1, -1))
    assert all("duration_ns" in e for e in events if e["event"] == "return")


def test_function_filter_traces_only_inside_calls_of_that_function():
    code, stdout, _, _ = attach_and_run("calls.py", "--function", "middle")
    assert code == 0
    f = lambda function, marker: frame("calls.py", function, marker)  # noqa: E731
    assert calls(stdout) == [
        f"=> {f('middle', 'def middle')}",
        f"  => {f('leaf', 'def leaf')}",
        f"  <= {f('leaf', 'leaf returns')}",
        f"  => {f('leaf', 'def leaf')}",
        f"  <= {f('leaf', 'leaf returns')}",
        f"<= {f('middle', 'middle returns')}",
    ]


def test_max_depth_and_json():
    result = run_tracer(
        "stack", "--filename", "calls.py", "--max-depth", "2", "--json", "--", PYTHON311, script("calls.py")
    )
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    assert [(e["event"], e["function"], e["depth"]) for e in events] == [
        ("call", "<module>", 0),
        ("call", "top", 1),
        ("return", "top", 1),
        ("return", "<module>", 0),
    ]
    assert set(events[0]) == {"time", "pid", "tid", "event", "depth", "function", "file", "line"}


def test_tid_filter_and_output_file(tmp_path):
    target = Target("calls.py")
    output = tmp_path / "trace.txt"
    try:
        tracer = Tracer("stack", "-p", target.pid, "--tid", target.pid, "--filename", "calls.py", "-o", output)
        tracer.wait_attached()
        target.go()
        target.finish()
        code, stdout, _ = tracer.finish()
    finally:
        target.kill()
    assert code == 0 and stdout == ""
    assert len(calls(output.read_text())) == 11

    other = Target("calls.py")
    try:
        tracer = Tracer("stack", other.pid, "--tid", other.pid + 100000, "--filename", "calls.py")
        tracer.wait_attached()
        other.go()
        other.finish()
        code, stdout, _ = tracer.finish()
    finally:
        other.kill()
    assert code == 0 and calls(stdout) == []


def test_duration_stops_a_trace_of_a_process_that_keeps_running():
    target = Target("forever.py")
    try:
        result = run_tracer("stack", target.pid, "--duration", "0.5", "--filename", "forever.py")
        assert target.process.poll() is None  # still running, untouched
        target.go()
        out, _ = target.finish()
    finally:
        target.kill()
    assert result.returncode == 0
    assert out == b"ticks done\n"
    assert summary_line(result.stderr.decode()).endswith("(duration)")
    lines = calls(result.stdout.decode())
    assert lines and set(lines[:2]) <= {
        f"=> {frame('forever.py', 'tick', 'def tick')}",
        f"<= tick ({script('forever.py')}:{line_of('forever.py', 'def tick') + 1})",
    }


@pytest.mark.parametrize(
    "which, function, file",
    [
        ("long", "f" * 255 + "…", "names-test.py"),  # cut at the buffer, visibly
        ("function", "<null>", "names-test.py"),  # CPython passes NULL for what it cannot encode
        ("file", "in_bad_file", "<null>"),
    ],
)
def test_truncated_and_null_names(which, function, file, tmp_path):
    """The target's own fate with an unencodable name is CPython 3.11's (it leaves the
    encoding error set); the tracer shows a placeholder and carries on."""
    trace = tmp_path / "trace.json"
    result = run_tracer("stack", "--json", "-o", trace, "--", PYTHON311, script("names.py"), which)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    named = [(e["event"], e["function"], e["file"]) for e in events if e["file"] in ("names-test.py", "<null>")]
    assert named == [("call", function, file), ("return", function, file)]
    assert summary_line(result.stderr.decode()).endswith("(target exited)")
