"""`pybpftrace stack` against real CPython processes: exact call hierarchies, on every version
with function probes (3.9 and 3.15 run in chroots and are traced from outside)."""

import json
import re

import pytest

import expected
from support import (
    PID,
    HOST,
    Target,
    calls,
    calls_by_thread,
    line_of,
    run_tracer,
    summary_line,
    trace_held,
)


def attach_and_run(interpreter, name, *options, args=()):
    """Trace a held script by PID, let it run; (tracer exit code, stdout, stderr, the target's
    stdout, the script's path as the target sees it)."""
    run = trace_held(Target(name, *args, interpreter=interpreter), "stack", PID, "--filename", name, *options)
    return run.code, run.stdout, run.stderr, run.target_output, run.path


def test_known_hierarchy_attached_by_pid(interpreter):
    code, stdout, stderr, out, path = attach_and_run(interpreter, "calls.py")
    assert calls(stdout) == expected.calls_attached(path)
    assert out == b"14\n"
    assert code == 0
    assert re.fullmatch(
        r"pybpftrace: \d+ events, 0 lost, 1 threads, \d+\.\d\d s \(target exited\)", summary_line(stderr)
    )
    assert f"(CPython {interpreter}." in stderr  # the version, read from the binary


def test_exceptions_generators_coroutines_and_decorators(interpreter):
    code, stdout, _, out, path = attach_and_run(interpreter, "features.py")
    assert code == 0 and out == b"done\n"
    assert calls(stdout) == expected.features(path, interpreter.version, launched=False)


def test_returns_without_entries_leave_the_stack_right(interpreter):
    code, stdout, _, out, path = attach_and_run(interpreter, "resumes.py", "--durations")
    assert code == 0 and out == b"50\n"
    lines = [re.sub(r" \[(\d+\.\d{3} (us|ms)|began before tracing)\]$", "", line) for line in calls(stdout)]
    if interpreter.version >= (3, 15):  # the return alone, its entry not seen
        assert lines[4].endswith(f"({path}:{line_of('resumes.py', 'managed catches')}) [entry not seen]")
        lines[4] = lines[4].removesuffix(" [entry not seen]")
    assert lines == expected.resumes(path, interpreter.version)


def test_attach_in_the_middle_of_a_deep_stack(interpreter):
    code, stdout, _, out, path = attach_and_run(interpreter, "midstack.py", "--durations", "--json")
    assert code == 0 and out == b"3\n"
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [(e["event"], e["depth"], e["function"], e["line"], "duration_ns" in e, e.get("note")) for e in events] == (
        expected.midstack(path)
    )
    assert {e["file"] for e in events} == {path}
    assert len({e["tid"] for e in events}) == 1


def test_threads_interleave_and_pair_per_thread(interpreter):
    code, stdout, stderr, out, path = attach_and_run(interpreter, "threads.py")
    assert code == 0 and out == b"[0, 1, 3, 6]\n"
    workers = [lines for lines in calls_by_thread(stdout).values() if "worker" in lines[0]]
    steps = []
    for lines in workers:
        # indented by the thread's real depth, below threading's hidden frames
        base = len(lines[0]) - len(lines[0].lstrip())
        normalized = [line[base:] for line in lines]
        steps.append(sum(line.startswith("      => step") for line in normalized))
        assert normalized == expected.worker_thread(path, steps[-1])
    assert sorted(steps) == [1, 2, 3, 4]
    assert re.search(r", 0 lost, 5 threads,", summary_line(stderr))


def test_recursion_deeper_than_any_fixed_buffer(interpreter):
    depth = 3000
    code, stdout, _, out, _ = attach_and_run(interpreter, "recursion.py", "--json", args=(str(depth),))
    assert code == 0 and out == f"{depth}\n".encode()
    events = [json.loads(line) for line in stdout.splitlines() if '"down"' in line]
    # from the module's frame, which was running when tracing began
    assert [e["depth"] for e in events if e["event"] == "call"] == list(range(1, depth + 2))
    assert [e["depth"] for e in events if e["event"] == "return"] == list(range(depth + 1, 0, -1))
    assert all("duration_ns" in e for e in events if e["event"] == "return")


def test_function_filter_traces_only_inside_calls_of_that_function(interpreter):
    code, stdout, _, _, path = attach_and_run(interpreter, "calls.py", "--function", "middle")
    assert code == 0
    inside = expected.calls_body(path)[1:7]
    assert calls(stdout) == [line[2:] for line in inside]


def test_midstack_text_starts_at_the_root_and_marks_calls_that_began_before_tracing():
    code, stdout, _, _, path = attach_and_run(HOST, "midstack.py", "--durations")
    assert code == 0
    lines = calls(stdout)
    line = lambda marker: line_of("midstack.py", marker)  # noqa: E731
    assert lines[:4] == [
        f"=> <module> ({path}:1) [began before tracing, at line {line('module ends')}]",
        f"  => outer ({path}:{line('def outer')}) [began before tracing, at line {line('outer returns')}]",
        f"    => inner ({path}:{line('def inner')}) [began before tracing, at line {line('inner calls waiting')}]",
        f"      => waiting ({path}:{line('def waiting')}) [began before tracing, at line "
        f"{line('wait for the tracer')}]",
    ]
    assert lines[6] == f"      <= waiting ({path}:{line('waiting returns')}) [began before tracing]"
    assert lines[-1] == f"<= <module> ({path}:{line('module ends')}) [began before tracing]"


def test_launched_command_from_its_first_call():
    result = run_tracer("stack", "--filename", "features.py", "--", *HOST.command("features.py"))
    assert result.returncode == 0
    assert calls(result.stdout.decode()) == expected.features(HOST.script("features.py"), (3, 11), launched=True)
    assert result.stdout.decode().count("done\n") == 1  # the target's own output, untouched


def test_launched_command_with_durations():
    result = run_tracer("stack", "--filename", "calls.py", "--durations", "--", *HOST.command("calls.py"))
    assert result.returncode == 0
    assert result.stdout.decode().startswith("     TIME(s)      TID  CALL\n")
    lines = calls(result.stdout.decode())
    path = HOST.script("calls.py")
    structure = [f"=> <module> ({path}:1)", *("  " + line for line in expected.calls_body(path)),
                 expected.module_ends(path, "calls.py")]
    assert [re.sub(r" \[\d+\.\d{3} (us|ms)\]$", "", line) for line in lines] == structure
    assert all(re.search(r" \[\d+\.\d{3} (us|ms)\]$", line) for line in lines if "<=" in line)


def test_max_depth_and_json():
    result = run_tracer(
        "stack", "--filename", "calls.py", "--max-depth", "2", "--json", "--", *HOST.command("calls.py")
    )
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    assert [(e["event"], e["function"], e["depth"]) for e in events] == [
        ("call", "<module>", 0),
        ("call", "top", 1),
        ("return", "top", 1),
        ("return", "<module>", 0),
    ]
    assert set(events[0]) == {"time", "pid", "tid", "event", "depth", "function", "file", "line", "first_line"}


def test_tid_filter_and_output_file(tmp_path):
    output = tmp_path / "trace.txt"
    run = trace_held(Target("calls.py"), "stack", "-p", PID, "--tid", PID, "--filename", "calls.py", "-o", output)
    assert run.code == 0 and run.stdout == ""
    assert calls(output.read_text()) == expected.calls_attached(HOST.script("calls.py"))
    other = trace_held(Target("calls.py"), "stack", PID, "--tid", 4_194_000, "--filename", "calls.py")  # no such thread
    assert other.code == 0 and calls(other.stdout) == []


def test_duration_stops_a_trace_of_a_process_that_keeps_running():
    with Target("forever.py") as target:
        result = run_tracer("stack", target.pid, "--duration", "0.5", "--filename", "forever.py")
        assert target.process.poll() is None  # still running, untouched
        target.go()
        out, _ = target.finish()
    assert result.returncode == 0
    assert out == b"ticks done\n"
    assert summary_line(result.stderr.decode()).endswith("(duration)")
    tick = f"tick ({HOST.script('forever.py')}:{line_of('forever.py', 'def tick')})"
    lines = [line.strip() for line in calls(result.stdout.decode()) if "[began before tracing" not in line]
    assert lines and set(lines) <= {f"=> {tick}", f"<= tick ({HOST.script('forever.py')}:{line_of('forever.py', 'def tick') + 1})"}


@pytest.mark.parametrize(
    "which, function, file",
    [
        ("long", "f" * 256 + "…", "names-test.py"),  # cut at the buffer, visibly
        ("function", "bad\ufffd", "names-test.py"),  # a character no encoding holds: replaced, visibly
        ("file", "in_bad_file", "bad\ufffd.py"),
    ],
)
def test_truncated_and_unencodable_names(which, function, file, tmp_path):
    """Names are read from the code object as CPython keeps them (the probe's arguments, NULL
    for a name CPython cannot encode as UTF-8, are not needed). The target's own fate with an
    unencodable name is CPython 3.11's (its probes leave the encoding error set)."""
    trace = tmp_path / "trace.json"
    result = run_tracer("stack", "--json", "-o", trace, "--", *HOST.command("names.py"), which)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    named = [(e["event"], e["function"], e["file"]) for e in events if "names-test" in e["file"] or "bad" in e["file"]]
    assert named == [("call", function, file), ("return", function, file)]
    assert summary_line(result.stderr.decode()).endswith("(target exited)")


def forks_trace(*options):
    result = run_tracer("stack", "--json", "--filename", "forks.py", *options, "--", *HOST.command("forks.py"),
                        input=b"go\n")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    by_pid = {}
    for event in events:
        by_pid.setdefault(event["pid"], []).append((event["event"], event["function"], event["line"]))
    return by_pid, result


def test_follow_forks_traces_children_from_when_they_are_attached():
    by_pid, result = forks_trace("--follow-forks")
    line = lambda marker: line_of("forks.py", marker)  # noqa: E731
    parent = [pid for pid, events in by_pid.items() if ("call", "<module>", 1) in events]
    children = [events for pid, events in by_pid.items() if pid not in parent]
    assert len(parent) == 1 and len(children) == 2
    assert ("call", "parent_work", line("def parent_work")) in by_pid[parent[0]]
    step = [("call", "child_step", line("def child_step")), ("return", "child_step", line("child_step returns"))]
    for events in children:  # each starts at its root, read from memory: where its parent forked it
        # child_work began before its process was attached, most often (read from memory, at the
        # line it calls from), or after (its entry seen)
        work = ("call", "child_work", line("child_work returns" if events[1][2] != line("def child_work") else
                                           "def child_work"))
        assert events == [("call", "<module>", line("workers start")), work, *step,
                          ("return", "child_work", line("child_work returns"))]
    assert ", 3 processes, 3 threads," in summary_line(result.stderr.decode())
    assert b"[0, 0]\n" in result.stdout


def test_children_are_not_traced_without_follow_forks():
    by_pid, result = forks_trace()
    assert len(by_pid) == 1
    assert "processes" not in summary_line(result.stderr.decode())
