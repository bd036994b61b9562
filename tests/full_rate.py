"""fib traced at full rate by `stack -o` to text and a Perfetto trace: what the files hold,
checked against what fib(n) calls (the default suite's small case, the stress suite's large)."""

import json
import re

from support import HOST, PID, Target, run_tracer, summary_line, trace_held


def fib_calls(n: int) -> int:
    """The calls fib(n) makes: 2*fib(n+1)-1."""
    a, b = 0, 1
    for _ in range(n + 1):
        a, b = b, a + b
    return 2 * a - 1


def traced_fib(tmp_path, n: int, threads: int, route=None):
    """fib(n) on each of `threads` threads under `stack -o` text and a Perfetto trace, launched
    (or by PID, by a route of tests' support.CallRoute): (the events the kernel dropped, the fib
    calls in the text, the lines marking drops there, the fib calls in the trace)."""
    text, trace = tmp_path / "calls.txt", tmp_path / "calls.trace.json"
    outputs = ("-o", str(text), "-o", str(trace))
    if route is None:
        run = run_tracer("stack", *outputs, "--", *HOST.command("fib_threads.py", str(n), str(threads)), timeout=600)
        assert run.returncode == 0, run.stderr
        stderr = run.stderr.decode()
    else:
        target = Target("fib_threads.py", str(n), str(threads), interpreter=route.interpreter)
        held = trace_held(target, "stack", PID, *outputs, *route.options())
        assert held.code == 0, held.stderr
        stderr = held.stderr
    lost = int(re.search(r", (\d+) lost", summary_line(stderr)).group(1))
    lines = text.read_text().splitlines()
    marked = sum(int(match.group(1)) for line in lines if (match := GAP.match(line)))
    spans = sum(1 for event in json.loads(trace.read_bytes())["traceEvents"] if event["name"] == "fib")
    return lost, sum(1 for line in lines if "=> fib (" in line), marked, spans


GAP = re.compile(r"^ {13}\[(\d+) events lost about here: the events ring buffer was full\]$")


def assert_every_call_kept_or_counted(lost: int, in_text: int, marked: int, spans: int, calls: int) -> None:
    """Every call is in the files, or the kernel dropped an event of it: counted, and marked
    in the text where it went missing (a loaded machine can take the tracer's core away)."""
    assert marked == lost
    assert calls - lost <= in_text <= calls
    assert spans >= in_text  # a call whose entry was dropped is still a span, its return seen
    if not lost:
        assert in_text == spans == calls
