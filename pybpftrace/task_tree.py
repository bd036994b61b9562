"""asyncio tasks drawn as a tree of who awaits whom, the way CPython 3.14's `python -m asyncio
pstree` draws it, so that the two can be read side by side: each root task, under it the
coroutines of its await chain (outermost first), and under its innermost coroutine the tasks
it awaits; a task that awaits no task ends with its own chain. A task awaited by several
shows under each of them.

Not pstree's: a running task says which thread runs it; a root whose parent could not be
known (before 3.14, a task waited on by asyncio.wait, shield or a program's own callback) says
so; and a cycle (tasks awaiting each other) is drawn once round, marked, where pstree refuses
to draw."""

from __future__ import annotations

from typing import Iterable

from .asyncio_tasks import AsyncTask, TaskFrame
from .escaping import shown

DEPTH_MAX = 256  # tasks within tasks drawn, at most


def frame_label(frame: TaskFrame) -> str:
    """pstree's: `function file:line`."""
    if frame.line is None:
        return f"{frame.function} {frame.file}" if frame.file else frame.function
    return f"{frame.function} {frame.file}:{frame.line}"


def task_label(task: AsyncTask) -> str:
    label = task.name
    if task.thread is not None:
        label += f" [running on thread {task.thread}]"
    if task.parent_unknown:
        label += " [awaited by something whose task is not known: shown as a root]"
    return label


class _Node:
    def __init__(self, label: str, task: bool):
        self.label = label
        self.task = task
        self.children: list[_Node] = []
        self._coroutines: dict[str, _Node] = {}

    def coroutine(self, label: str) -> "_Node":
        """The child coroutine node of that label, made once (pstree merges equal frames)."""
        if label not in self._coroutines:
            node = self._coroutines[label] = _Node(label, task=False)
            self.children.append(node)
        return self._coroutines[label]


def build(tasks: Iterable[AsyncTask]) -> list[_Node]:
    """The root nodes: tasks awaited by no task we have, in the order given."""
    tasks = list(tasks)
    by_address = {task.address: task for task in tasks}
    children: dict[int, list[AsyncTask]] = {}
    for task in tasks:
        for parent in task.awaited_by:
            if parent in by_address:
                children.setdefault(parent, []).append(task)
    roots = [task for task in tasks if not any(parent in by_address for parent in task.awaited_by)]
    drawn: set[int] = set()
    nodes = [_task_node(task, children, (), drawn) for task in roots]
    # Tasks only in cycles have no root: each cycle is drawn from one of its tasks.
    for task in tasks:
        if task.address not in drawn:
            nodes.append(_task_node(task, children, (), drawn, cycle=True))
    return nodes


def _task_node(task: AsyncTask, children: dict[int, list[AsyncTask]], above: tuple[int, ...], drawn: set[int],
               cycle: bool = False) -> _Node:
    drawn.add(task.address)
    node = _Node(task_label(task) + (" [awaits, through the tasks below, itself]" if cycle else ""), task=True)
    innermost = node
    for frame in reversed(task.frames):
        innermost = innermost.coroutine(frame_label(frame))
    for child in children.get(task.address, ()):
        if child.address in above or child.address == task.address or len(above) >= DEPTH_MAX:
            innermost.children.append(_Node(f"{child.name} [already shown above: a cycle]", task=True))
            continue
        innermost.children.append(_task_node(child, children, (*above, task.address), drawn))
    return node


def render(tasks: Iterable[AsyncTask]) -> list[str]:
    """The tree's lines, as pstree prints them (tasks marked (T))."""
    lines: list[str] = []
    for root in build(tasks):
        _render(root, "", True, lines)
    return lines


def _render(node: _Node, prefix: str, last: bool, lines: list[str]) -> None:
    flag = "(T)" if node.task else ""
    lines.append(f"{prefix}{'└── ' if last else '├── '}{flag} {shown(node.label)}")
    below = prefix + ("    " if last else "│   ")
    for index, child in enumerate(node.children):
        _render(child, below, index == len(node.children) - 1, lines)
