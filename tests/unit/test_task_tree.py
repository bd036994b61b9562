"""The asyncio task tree as pstree draws it: chains outermost first, children under the
innermost coroutine, equal frames merged, leaves with their own chain; and what pstree does
not draw: a cycle (once round, marked), a running task and an unknown parent."""

from pybpftrace.asyncio_tasks import AsyncTask, TaskFrame
from pybpftrace.task_tree import render


def task(address, name, frames, awaited_by=(), **fields):
    return AsyncTask(address, name, "pending", address + 1, None, list(awaited_by),
                     [TaskFrame(function, "f.py", line) for function, line in frames], **fields)


def test_children_under_their_parents_innermost_coroutine():
    tasks = [
        task(1, "Task-1", [("_aexit", 121), ("__aexit__", 72), ("main", 40)]),
        task(2, "a", [("wait", 213), ("a", 10)], [1]),
        task(3, "b", [("b", 20)], [1]),
        task(4, "c", [("sleep", 700), ("leaf", 30)], [3]),
    ]
    assert render(tasks) == [
        "└── (T) Task-1",
        "    └──  main f.py:40",
        "        └──  __aexit__ f.py:72",
        "            └──  _aexit f.py:121",
        "                ├── (T) a",
        "                │   └──  a f.py:10",
        "                │       └──  wait f.py:213",
        "                └── (T) b",
        "                    └──  b f.py:20",
        "                        └── (T) c",
        "                            └──  leaf f.py:30",
        "                                └──  sleep f.py:700",
    ]


def test_roots_in_order_and_a_task_awaited_by_two():
    tasks = [task(1, "one", [("x", 1)]), task(2, "two", [("y", 2)]), task(3, "shared", [("z", 3)], [1, 2])]
    lines = render(tasks)
    assert lines[0] == "└── (T) one" and "└── (T) two" in lines
    assert lines.count("        └── (T) shared") == 2


def test_a_cycle_is_drawn_once_round():
    tasks = [task(1, "first", [("f", 1)], [2]), task(2, "second", [("s", 2)], [1])]
    assert render(tasks) == [
        "└── (T) first [awaits, through the tasks below, itself]",
        "    └──  f f.py:1",
        "        └── (T) second",
        "            └──  s f.py:2",
        "                └── (T) first [already shown above: a cycle]",
    ]


def test_running_and_unknown_parents_are_said():
    running = AsyncTask(1, "busy", "running", 2, 4242, [], [TaskFrame("spin", "f.py", 5)])
    lonely = task(3, "lonely", [], parent_unknown=True)
    assert render([running, lonely]) == [
        "└── (T) busy [running on thread 4242]",
        "    └──  spin f.py:5",
        "└── (T) lonely [awaited by something whose task is not known: shown as a root]",
    ]


def test_names_from_the_target_are_escaped():
    assert render([task(1, "evil\x1b[2J", [])]) == ["└── (T) evil\\x1b[2J"]
