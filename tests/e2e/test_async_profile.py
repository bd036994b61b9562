"""profile --async and top --async: a busy coroutine in a child task shows under the coroutine
of the task that awaits it (main's, in a TaskGroup on 3.11+, awaiting the task on 3.9 and
3.10), not under the event loop, on every CPython the tasks are read of."""

import json
import re

import pytest

from support import ALL_INTERPRETERS, Target, Tracer, folded_weights, line_of, summary_line

LOOP_FRAMES = ("_run_once", "run_forever", "_run")


def traced_busy(interpreter, *arguments: str):
    """The tracer's output over a target whose task `busy` spins (after it said ready)."""
    target = Target("async_busy.py", interpreter=interpreter)
    try:
        assert target.process.stdout.readline() == b"ready\n"
        tracer = Tracer(*arguments, str(target.pid))
        tracer.wait_attached()
        code, stdout, stderr = tracer.finish()
        target.go()
        target.finish()
    finally:
        target.kill()
    return code, stdout, stderr, target.path


def frame(path: str, function: str) -> str:
    return f"{function} ({path}:{line_of('async_busy.py', f'def {function}')})"


def test_a_busy_task_shows_under_the_task_awaiting_it(every_interpreter):
    if every_interpreter.version < (3, 9):
        pytest.skip("asyncio tasks are read on CPython 3.9 to 3.15")
    code, stdout, stderr, path = traced_busy(every_interpreter, "profile", "--async", "--duration", "3")
    assert code == 0, stderr
    weights = folded_weights(stdout)
    spin, busy, main = frame(path, "spin"), frame(path, "busy"), frame(path, "main")
    spinning = {stack: n for stack, n in weights.items() if stack.endswith(spin)}
    assert sum(spinning.values()) >= 200, weights
    under_main = 0
    for stack, n in spinning.items():
        frames = stack.split(";")
        if frames[0] != "[task Task-1]" or frames[1] != main or "[task busy]" not in frames:
            continue
        between = frames[1 : frames.index(busy)]
        if between[-1] == "[task busy]" and not any(f.startswith(LOOP_FRAMES) for f in between):
            under_main += n
    assert under_main >= 0.95 * sum(spinning.values()), spinning
    assert re.search(r"--async: \d+ samples joined to their tasks' awaiters", summary_line(stderr)), stderr


def test_top_counts_the_awaiters_of_a_busy_task():
    interpreter = ALL_INTERPRETERS[0]
    interpreter.prepare()
    code, stdout, stderr, path = traced_busy(interpreter, "top", "--async", "--json", "--sort", "total", "--duration", "2")
    assert code == 0, stderr
    totals = {}
    for line in stdout.splitlines():
        for row in json.loads(line)["functions"]:
            totals[row["function"]] = totals.get(row["function"], 0) + row["total"]
    assert totals.get("[task busy]", 0) >= 0.9 * totals["spin"] and totals.get("main", 0) >= 0.9 * totals["spin"]
