"""The exact call hierarchies of the test scripts, for every CPython version with function
probes: built from the `# marker` comments in the scripts, with each version's own line
numbers spelled out where CPython reports them differently; and the exact audit events of
audits.py on every version."""

from __future__ import annotations

from support import line_of


def frame(path: str, name: str, function: str, marker: str) -> str:
    return f"{function} ({path}:{line_of(name, marker)})"


def running(path: str, name: str, marker: str = "wait for the tracer") -> str:
    """The module a script runs, as the stream shows it when tracing began inside it, waiting on
    the line marked: read from memory, before any call it then makes."""
    return f"=> <module> ({path}:1) [began before tracing, at line {line_of(name, marker)}]"


def module_ends(path: str, name: str) -> str:
    return f"<= <module> ({path}:{line_of(name, 'module ends')})"


def calls_body(path: str) -> list[str]:
    """What calls.py calls once let go."""
    f = lambda function, marker: frame(path, "calls.py", function, marker)  # noqa: E731
    return [
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
    ]


def calls_attached(path: str) -> list[str]:
    """calls.py, traced from the line it waits on: its stack starts at its module."""
    return [running(path, "calls.py"), *("  " + line for line in calls_body(path)), module_ends(path, "calls.py")]


def features(path: str, version: tuple[int, int], launched: bool) -> list[str]:
    """features.py: exceptions unwinding, a generator, a coroutine, a decorated function.
    Launched, the trace starts at the module (and its decorating call); attached, at main."""
    f = lambda function, marker: frame(path, "features.py", function, marker)  # noqa: E731
    # A generator's last return: the `for` line, except on 3.9 where it is the last line run.
    generator_end = "numbers yields" if version < (3, 11) else "numbers loop"
    # A call shows its function's first line; a resumption says where it resumed.
    resumed = f"{f('numbers', 'def numbers')} [resumed at line {line_of('features.py', 'numbers yields')}]"
    indent = "  "
    body = [
        f"=> {f('main', 'def main')}",
        f"  => {f('catcher', 'def catcher')}",
        f"    => {f('relay', 'def relay')}",
        f"      => {f('fail', 'def fail')}",
        f"      <= {f('fail', 'fail raises')}",  # unwinding fires function__return too
        f"    <= {f('relay', 'relay unwinds')}",
        f"  <= {f('catcher', 'catcher returns')}",
        f"  => {f('consume', 'def consume')}",
        f"    => {f('numbers', 'def numbers')}",  # each resumption is a call
        f"    <= {f('numbers', 'numbers yields')}",
        f"    => {resumed}",
        f"    <= {f('numbers', 'numbers yields')}",
        f"    => {resumed}",
        f"    <= {f('numbers', generator_end)}",
        f"  <= {f('consume', 'consume returns')}",
        f"  => {f('drive', 'def drive')}",
        f"    => {f('parent', 'def parent')}",
        f"      => {f('child', 'def child')}",
        f"      <= {f('child', 'child returns')}",
        f"    <= {f('parent', 'parent returns')}",
        f"  <= {f('drive', 'drive returns')}",
        f"  => {f('wrapper', 'def wrapper')}",  # 3.15 reports no line (-1): the source tells
        f"    => {f('decorated', 'def decorated')}",
        f"    <= {f('decorated', 'decorated returns')}",
        f"  <= {f('wrapper', 'wrapper returns')}",
        f"<= {f('main', 'main returns')}",
    ]
    if not launched:
        return [running(path, "features.py"), *("  " + line for line in body), module_ends(path, "features.py")]
    return [
        f"=> <module> ({path}:1)",
        f"  => {f('traced', 'def traced')}",
        f"  <= {f('traced', 'traced returns')}",
        *(indent + line for line in body),
        module_ends(path, "features.py"),
    ]


def midstack(path: str, returns_seen: bool = True) -> list[tuple]:
    """midstack.py attached while blocked three calls deep: (event, depth, function, line,
    has a duration, note). The frames it was in come first, read from memory, each at the line
    it runs (a call's, while it waits). On the eval-frame route, those frames' returns are not
    seen (`returns_seen` False): they are noticed late, at the next call or the thread's end,
    where they were not known."""
    line = lambda marker: line_of("midstack.py", marker)  # noqa: E731
    began = "began before tracing"

    def back(depth: int, function: str, marker: str) -> tuple:  # the return of a frame read from memory
        if returns_seen:
            return ("return", depth, function, line(marker), False, began)
        return ("return", depth, function, None, False, f"{began}; return seen late")

    return [
        ("call", 0, "<module>", line("module ends"), False, began),
        ("call", 1, "outer", line("outer returns"), False, began),
        ("call", 2, "inner", line("inner calls waiting"), False, began),
        ("call", 3, "waiting", line("wait for the tracer"), False, began),
        ("call", 4, "helper", line("def helper"), False, None),
        ("return", 4, "helper", line("helper returns"), True, None),
        back(3, "waiting", "waiting returns"),
        ("call", 3, "sibling", line("def sibling"), False, None),
        ("return", 3, "sibling", line("sibling returns"), True, None),
        back(2, "inner", "inner returns"),
        back(1, "outer", "outer returns"),
        back(0, "<module>", "module ends"),
    ]


def worker_thread(path: str, steps: int) -> list[str]:
    """One thread of threads.py, indented from its worker frame."""
    f = lambda function, marker: frame(path, "threads.py", function, marker)  # noqa: E731
    genexpr = f"<genexpr> ({path}:{line_of('threads.py', 'work returns')})"
    lines = [f"=> {f('worker', 'def worker')}", f"  => {f('work', 'def work')}", f"    => {genexpr}"]
    for _ in range(steps):
        lines += [
            f"      => {f('step', 'def step')}",
            f"      <= {f('step', 'step returns')}",
            f"    <= {genexpr}",
            f"    => {genexpr}",
        ]
    return lines + [f"    <= {genexpr}", f"  <= {f('work', 'work returns')}", f"<= {f('worker', 'worker returns')}"]


def audits(version: tuple[int, int]) -> list[str]:
    """audits.py's events as `audit` shows them (after the time, PID and TID columns), with
    addresses as 0x…."""
    # An item's snapshot is 256 bytes; an ASCII str's characters start after its header,
    # which lost its wstr pointer in 3.12.
    shown = 256 - (48 if version < (3, 12) else 40)
    zeros_and_ones = "\\x00\\xff" * 112  # 224 bytes: the snapshot after the bytes header
    return [
        "pybpftrace.test ('text', b'bytes', 42, -7, 1267650600228229401496703205376, 1.5, None, ('nested', 1))",
        f"pybpftrace.strings ('', 'café', '€uro', '😀!', '{'x' * shown}'…(300 chars), b'', "
        f"b'{zeros_and_ones}'…(400 bytes), ('ü', '€'))",
        "pybpftrace.numbers (0, -1267650600228229401496703205376, 1073741824, True, False, "
        "<int of 167 30-bit digits>, inf, -0.0, …1 more)",
        "pybpftrace.tuples ((), (1,), (1, 2, 3, 4, …2 more), ((…2 more), 'deep'), 1, 2, 3, 4, …2 more)",
        "pybpftrace.objects (<list object at 0x…>, <Custom object at 0x…>, <_io.TextIOWrapper object at 0x…>, "
        "<type object at 0x…>)",
        f"pybpftrace.{'n' * 244}… ()",  # the name cut at 255 bytes
        "pybpftrace.last ()",
    ]


def resumes(path: str, version: tuple[int, int]) -> list[str]:
    """resumes.py: a generator resumed by throw() (under contextlib's hidden frames), then 50
    __init__ calls, which 3.15 specializes after a few."""
    return [
        running(path, "resumes.py"),
        *("  " + line for line in resumes_body(path, version)),
        module_ends(path, "resumes.py"),
    ]


def resumes_body(path: str, version: tuple[int, int]) -> list[str]:
    f = lambda function, marker: frame(path, "resumes.py", function, marker)  # noqa: E731
    # 3.15 resumes the generator in throw() without function__entry: the return shows alone
    resumed = f"[resumed at line {line_of('resumes.py', 'managed yields')}]"
    thrown = [] if version >= (3, 15) else [f"    => {f('managed', 'def managed')} {resumed}"]
    return [
        f"=> {f('throws', 'def throws')}",
        f"    => {f('managed', 'def managed')}",
        f"    <= {f('managed', 'managed yields')}",
        *thrown,
        f"    <= {f('managed', 'managed catches')}",
        f"<= {f('throws', 'throws returns')}",
        f"=> {f('boxes', 'def boxes')}",
        *[f"  {arrow} {f('__init__', marker)}" for _ in range(50)
          for arrow, marker in (("=>", "def init"), ("<=", "init returns"))],
        f"<= {f('boxes', 'boxes returns')}",
    ]
