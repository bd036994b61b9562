"""dump: every thread's stack at its place, with its state, on every CPython the walker reads,
without pausing the target; its text form; bad input."""

import json
import re
import subprocess

import pytest

from support import HOST, Target, line_of, run_tracer

SCRIPT_FRAMES = {  # each thread's frames in held.py, innermost first, by marker
    "sleeper": ["sleeper sleeps"],
    "waiter": ["waiter waits"],
    "consumer": ["numbers sleeps", "consumer iterates"],
    "looper": ["looper runs"],
    "deep": ["deep sleeps"] + ["deep recurses"] * 600,
    "burner": ["burner burns"],
}


def held(interpreter):
    """held.py with every thread in place."""
    target = Target("held.py", interpreter=interpreter)
    assert target.process.stdout.readline() == b"ready\n"
    return target


def marker_frame(marker):
    function = marker.split()[0]
    return (function, line_of("held.py", marker))


def test_every_thread_at_its_place(every_interpreter):
    with held(every_interpreter) as target:
        result = run_tracer("dump", target.pid, "--json")
        alive = target.process.poll() is None
    assert result.returncode == 0, result.stderr
    assert alive
    dump = json.loads(result.stdout)
    assert dump["pid"] == target.pid and dump["python"].startswith(f"{every_interpreter}.")
    threads = {}
    for thread in dump["threads"]:
        ours = [(frame["function"], frame["line"]) for frame in thread["frames"] if frame["file"] == target.path]
        if thread["tid"] == target.pid:
            assert ours == [("<module>", line_of("held.py", "main reads"))]
            assert thread["state"] == "idle" and not thread["holds_gil"]
            continue
        assert ours, thread
        threads[ours[-1][0]] = (thread, ours)  # by its outermost frame in the script
    assert sorted(threads) == sorted(SCRIPT_FRAMES)
    for name, markers in SCRIPT_FRAMES.items():
        thread, ours = threads[name]
        assert ours == [marker_frame(marker) for marker in markers], name
        outermost = thread["frames"][-1]
        assert outermost["function"] == "_bootstrap" and outermost["file"].endswith("threading.py"), name
        assert not thread["truncated"] and not thread["changing"], name
        if name == "burner":
            assert thread["state"] == "running" and thread["holds_gil"]
        else:
            assert thread["state"] == "idle" and not thread["holds_gil"], name
            assert thread["syscall"], name
        if every_interpreter.version >= (3, 15):  # CPython names its OS threads after Thread.name
            assert thread["name"] == name
    assert threads["waiter"][0]["syscall"] == "futex"


def test_text_form():
    with held(HOST) as target:
        result = run_tracer("dump", target.pid)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.startswith(f"Process {target.pid}: {HOST.python} {target.path}\n"
                           f"CPython 3.11.2 at {HOST.python}; stacks read in ")
    assert re.search(r"; stacks read in \d+\.\d ms, the process never paused\n", text)
    blocks = text.split("\n\n")[1:]
    (burner,) = [block for block in blocks if f"burner ({target.path}:" in block]
    assert re.match(r"Thread \d+ \(0x[0-9a-f]+\): running, holds the GIL\n"
                    rf"    burner \({re.escape(target.path)}:{line_of('held.py', 'burner burns')}\)\n"
                    r"    run \(/usr/lib/python3\.11/threading\.py:\d+\)\n", burner)
    (waiter,) = [block for block in blocks if f"waiter ({target.path}:" in block]
    assert re.match(r"Thread \d+ \(0x[0-9a-f]+\): idle in futex\n", waiter)


def test_no_such_process():
    result = run_tracer("dump", "999999999")
    assert (result.returncode, result.stderr) == (3, b"pybpftrace: no process with PID 999999999\n")


def test_not_a_python():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_tracer("dump", str(sleeper.pid))
    finally:
        sleeper.kill()
    assert result.returncode == 4
    assert result.stderr == f"pybpftrace: PID {sleeper.pid} is not a Python: it holds no CPython interpreter\n".encode()


def test_dump_needs_a_pid():
    result = run_tracer("dump")
    assert result.returncode == 64
