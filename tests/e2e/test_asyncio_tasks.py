"""dump's asyncio tasks, on every CPython the walker reads: each task's name, state, thread and
await chain (functions and lines), who awaits whom, the tree as `python -m asyncio pstree`
draws it (3.14+), and the shapes a hostile or odd target gives (a running task, a cycle, a
garbage frame pointer, a task list made into a loop, 10,000 tasks)."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from support import TIMEOUT, Target, idents_when_ready, line_of, run_tracer, wait_for_interpreter

SCRIPT = "async_tasks.py"
SHAPES = "async_shapes.py"


def ours(frame: dict, path: str) -> tuple:
    """A frame of the test script as (function, line); a library's as (function, its file's name)."""
    if frame["file"] == path:
        return frame["function"], frame["line"]
    return frame["function"], os.path.basename(frame["file"])


def tasks_of(target: Target, *options: str) -> tuple[dict, list[dict]]:
    result = run_tracer("dump", target.pid, "--json", *options)
    assert result.returncode == 0, result.stderr
    dump = json.loads(result.stdout)
    return dump, dump["tasks"]


def dumped(interpreter, *args: str) -> Target:
    target = Target(SHAPES if args else SCRIPT, *args, interpreter=interpreter)
    line = target.process.stdout.readline()
    assert line == b"ready\n", (line, target.process.stderr.read())
    return target


def supervisor_chain(interpreter) -> list[tuple]:
    """main's chain, innermost first: waiting in its TaskGroup's exit (3.11+; in _aexit, which
    __aexit__ awaits, from 3.13.1 and 3.14), or in gather."""
    if interpreter.version < (3, 11):
        return [("main", line_of(SCRIPT, "main gathers"))]
    has_aexit = subprocess.run([*interpreter.argv(), "-c", "import asyncio; print(hasattr(asyncio.TaskGroup, '_aexit'))"],
                               capture_output=True, text=True, timeout=TIMEOUT).stdout.strip() == "True"
    group = [("_aexit", "taskgroups.py")] if has_aexit else []
    return group + [("__aexit__", "taskgroups.py"), ("main", line_of(SCRIPT, "main groups"))]


def test_tasks_chains_and_parents(every_interpreter):
    if every_interpreter.version < (3, 9):
        pytest.skip("asyncio tasks are read on CPython 3.9 to 3.15 (3.7 and 3.8 are not read; test_older_versions_say_so)")
    with dumped(every_interpreter) as target:
        dump, tasks = tasks_of(target)
        alive = target.process.poll() is None
    assert alive
    assert dump["tasks_notes"] == []
    by_name = {task["name"]: task for task in tasks}
    children = sorted(name for name in by_name if re.fullmatch(r"Task-\d+", name) and name != "Task-1")
    assert sorted(by_name) == sorted(["Task-1", "nested", "blocked", "gatherer", *children]) and len(children) == 2
    main, gatherer = by_name["Task-1"]["id"], by_name["gatherer"]["id"]
    wait = ("wait", "locks.py")
    expected = {
        "Task-1": ([], supervisor_chain(every_interpreter)),
        "nested": ([main], [wait, ("level3", line_of(SCRIPT, "level3 waits")), ("level2", line_of(SCRIPT, "level2 awaits")),
                            ("level1", line_of(SCRIPT, "level1 awaits"))]),
        "blocked": ([main], [wait, ("blocked", line_of(SCRIPT, "blocked waits"))]),
        "gatherer": ([main], [("gathered", line_of(SCRIPT, "gathered gathers"))]),
        **{child: ([gatherer], [("sleep", "tasks.py"), ("sleeper", line_of(SCRIPT, "sleeper sleeps"))])
           for child in children},
    }
    for name, (parents, chain) in expected.items():
        task = by_name[name]
        assert task["awaited_by"] == parents, name
        assert [ours(frame, target.path) for frame in task["frames"]] == chain, name
        assert task["state"] == "pending" and task["thread"] is None, name
        for frame in task["frames"]:  # asyncio's own: at a line that awaits (or yields), read in its source
            if frame["file"] != target.path:
                source = Path(every_interpreter.root + frame["file"]).read_text().splitlines()
                assert re.search(r"\b(await|yield)\b", source[frame["line"] - 1]), (name, frame)
        assert "parent_unknown" not in task, name


def test_qualified_names(any_interpreter):
    """--qualnames names methods Class.method (3.11+, co_qualname), as CPython's own tools do."""
    if any_interpreter.version < (3, 11):
        pytest.skip("co_qualname is 3.11's")
    with dumped(any_interpreter) as target:
        _, tasks = tasks_of(target, "--qualnames")
    blocked = next(task for task in tasks if task["name"] == "blocked")
    assert [frame["function"] for frame in blocked["frames"]] == ["Event.wait", "blocked"]


def test_older_versions_say_so():
    from support import pyenv_interpreter

    found = pyenv_interpreter((3, 8))
    if found is None:
        pytest.skip("no pyenv build of 3.8 on this machine")
    with dumped(found) as target:
        result = run_tracer("dump", target.pid)
        document = json.loads(run_tracer("dump", target.pid, "--json").stdout)
    assert result.returncode == 0, result.stderr
    assert b"[asyncio tasks not read: pybpftrace reads them on CPython 3.9 to 3.15, not 3.8]" in result.stdout
    assert document["tasks"] is None


def test_no_asyncio_no_section(interpreter):
    """A program that never imported asyncio has no tasks section at all."""
    with Target("named_threads.py", interpreter=interpreter) as target:
        idents_when_ready(target)
        text = run_tracer("dump", target.pid)
        document = json.loads(run_tracer("dump", target.pid, "--json").stdout)
    assert text.returncode == 0 and b"asyncio tasks" not in text.stdout
    assert document["tasks"] == []


def pstree_target(interpreter) -> subprocess.Popen:
    """The script in a mount namespace of its own with its chroot's /proc mounted, so that
    CPython's tool, run in the same namespace and chroot, finds the process's files."""
    root = interpreter.root
    interpreter.prepare()
    shell = f'mount -t proc proc "{root}/proc" && exec chroot "{root}" {interpreter.python} {interpreter.script(SCRIPT)}'
    process = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_interpreter(process.pid, interpreter.host_python)
    return process


def tree(output: bytes) -> list[str]:
    """The tree lines of a dump's asyncio section."""
    text = output.decode()
    section = text[text.index("\nasyncio tasks: "):].splitlines()[2:]
    return [line for line in section if line]


def test_tree_is_pstrees(any_interpreter):
    """On 3.14+, the tree is the one `python -m asyncio pstree` prints for the same process,
    line for line (with --qualnames, as CPython's tool names functions)."""
    if any_interpreter.version < (3, 14):
        pytest.skip("python -m asyncio pstree is 3.14's")
    process = pstree_target(any_interpreter)
    try:
        assert process.stdout.readline() == b"ready\n", process.stderr.read()
        ours_ = run_tracer("dump", process.pid, "--qualnames")
        theirs = subprocess.run(["nsenter", "-t", str(process.pid), "-m", "chroot", any_interpreter.root,
                                 any_interpreter.python, "-m", "asyncio", "pstree", str(process.pid)],
                                capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
    assert ours_.returncode == 0, ours_.stderr
    assert theirs.returncode == 0, theirs.stderr
    assert tree(ours_.stdout) == [line for line in theirs.stdout.splitlines() if line]


def test_running_task(any_interpreter):
    """A task running now: on the thread that runs it, its chain the thread's stack down to its
    coroutine; awaited by main, which awaits it."""
    with dumped(any_interpreter, "running") as target:
        _, tasks = tasks_of(target)
    by_name = {task["name"]: task for task in tasks}
    spinner, main = by_name["spinner"], by_name["Task-1"]
    assert spinner["state"] == "running" and spinner["thread"] == target.pid
    assert [ours(frame, target.path) for frame in spinner["frames"]] == [
        ("spin", line_of(SHAPES, "spin spins")), ("spinner", line_of(SHAPES, "spinner awaits"))]
    assert spinner["awaited_by"] == [main["id"]]
    assert main["state"] == "pending" and main["thread"] is None
    assert [ours(frame, target.path) for frame in main["frames"]] == [("main", line_of(SHAPES, "main awaits"))]


def test_tasks_awaiting_each_other(any_interpreter):
    """A cycle (a deadlock Python allows) is drawn once round, marked, never followed for ever."""
    with dumped(any_interpreter, "cycle") as target:
        _, tasks = tasks_of(target)
        text = run_tracer("dump", target.pid).stdout
    by_name = {task["name"]: task for task in tasks}
    assert by_name["first"]["awaited_by"] == [by_name["second"]["id"]]
    assert by_name["second"]["awaited_by"] == [by_name["first"]["id"]]
    lines = tree(text)
    assert sum("[awaits, through the tasks below, itself]" in line for line in lines) == 1
    assert sum("[already shown above: a cycle]" in line for line in lines) == 1


def test_garbage_frame_pointer(any_interpreter):
    """A coroutine whose frame (3.9, 3.10) or code (3.11+) pointer is garbage: its task is listed,
    its chain says it could not be read; the others are whole."""
    with dumped(any_interpreter, "garbage") as target:
        _, tasks = tasks_of(target)
        alive = target.process.poll() is None
    assert alive
    by_name = {task["name"]: task for task in tasks}
    assert by_name["spoiled"]["frames"] == [{"function": "[unreadable coroutine]", "file": "", "line": None}]
    assert [frame["function"] for frame in by_name["Task-1"]["frames"]] == ["wait", "main"]


def test_task_list_made_into_a_loop(any_interpreter):
    """3.14+: a list whose node points at itself ends the walk there, saying so."""
    if any_interpreter.version < (3, 14):
        pytest.skip("the per-thread task lists are 3.14's")
    with dumped(any_interpreter, "looped") as target:
        dump, tasks = tasks_of(target)
    names = {task["name"] for task in tasks}
    assert {"Task-1", "looped-0", "looped-1"} <= names and "looped-2" not in names
    assert any("did not lead back to its head" in note for note in dump["tasks_notes"])


def test_ten_thousand_tasks(any_interpreter):
    """Every one of 10,000 pending tasks listed, each with its chain (the time it takes is in
    the README, measured by make bench)."""
    with dumped(any_interpreter, "many", "10000") as target:
        dump, tasks = tasks_of(target)
    waiting = [task for task in tasks if task["name"] != "Task-1"]
    assert len(waiting) == 10_000
    chains = {tuple(ours(frame, target.path) for frame in task["frames"]) for task in waiting}
    assert chains == {(("wait", "locks.py"), ("waiting", line_of(SHAPES, "waiting waits")))}
    assert dump["tasks_notes"] == []
