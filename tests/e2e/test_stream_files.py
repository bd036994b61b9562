"""`stack -o FILE`: what the files hold, the same however fast the tracer reads (compared with
what the version before the spooled reading wrote, times and ids left out), and every call in
them at full rate."""

import json
import re
from pathlib import Path

from full_rate import assert_every_call_kept_or_counted, fib_calls, traced_fib
from support import PID, Target, calls, trace_held

EXPECTED = Path(__file__).parent / "expected_files"
DURATION = re.compile(r" \[\d+(\.\d+)? (ns|us|ms|s)\]$")


def text_shape(text: str, path: str) -> list[str]:
    """The lines without their time, TID and durations, the script's path as SCRIPT."""
    return [DURATION.sub(" [D]", line).replace(path, "SCRIPT") for line in calls(text)]


def trace_shape(raw: bytes, path: str) -> list[dict]:
    """The trace's events without times and ids, the script's path as SCRIPT."""
    shaped = []
    for event in json.loads(raw)["traceEvents"]:
        event = {key: value for key, value in event.items() if key not in ("ts", "dur", "pid", "tid")}
        if "file" in event.get("args", {}):
            event["args"] = {**event["args"], "file": event["args"]["file"].replace(path, "SCRIPT")}
        if event.get("name") in ("thread_name", "process_name"):
            event.pop("args")
        shaped.append(event)
    return shaped


def test_files_hold_what_they_held(tmp_path):
    text, trace = tmp_path / "calls.txt", tmp_path / "calls.trace.json"
    run = trace_held(Target("features.py"), "stack", PID, "--filename", "features.py", "--durations",
                     "-o", str(text), "-o", str(trace))
    assert run.code == 0 and run.target_output == b"done\n"
    assert text_shape(text.read_text(), run.path) == (EXPECTED / "features.txt").read_text().splitlines()
    assert trace_shape(trace.read_bytes(), run.path) == json.loads((EXPECTED / "features.trace.json").read_text())


def test_every_call_of_a_launched_fib_in_text_and_trace(tmp_path):
    assert_every_call_kept_or_counted(*traced_fib(tmp_path, 20, 1), fib_calls(20))


def test_every_call_of_two_threads_in_text_and_trace(tmp_path):
    assert_every_call_kept_or_counted(*traced_fib(tmp_path, 18, 2), 2 * fib_calls(18))


def test_every_call_by_every_route(tmp_path, call_route):
    assert_every_call_kept_or_counted(*traced_fib(tmp_path, 18, 2, call_route), 2 * fib_calls(18))
