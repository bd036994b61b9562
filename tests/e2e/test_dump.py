"""dump: every thread's stack at its place, with its state and Python's name for it, on every
CPython the walker reads, without pausing the target; its text form; bad input."""

import json
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from support import HOST, PID, TIMEOUT, Target, folded_weights, idents_when_ready, line_of, run_tracer, trace_held

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
            assert thread["name"] == "MainThread"
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
        assert thread["name"] == name  # held.py names each thread after its function
        if every_interpreter.version >= (3, 15):  # CPython names its OS threads after Thread.name
            assert thread["os_name"] == name
    assert threads["waiter"][0]["syscall"] == "futex"


DUMPS = 30


def test_a_running_thread_shows_only_frames_it_had(every_interpreter):
    """py-spy's recursion test: a thread that calls and returns all the time, dumped 30 times
    (one tracer, one program): each dump is a stack it really had, every frame named, the
    outermost `<module>` at its line; none marked changing."""
    target = Target("recurse_forever.py", interpreter=every_interpreter)
    with target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("dump", "--json", *[str(target.pid)] * DUMPS)
        alive = target.process.poll() is None
    assert result.returncode == 0, result.stderr
    assert alive
    body = {line_of("recurse_forever.py", marker) for marker in ("recurse bottom", "recurse returns", "recurse calls")}
    dumps = json.loads(result.stdout)
    assert len(dumps) == DUMPS
    for dump in dumps:
        (thread,) = dump["threads"]
        frames = [(frame["function"], frame["file"], frame["line"]) for frame in thread["frames"]]
        module = {line_of("recurse_forever.py", marker) for marker in ("module recurses", "module loops")}
        assert frames[-1][:2] == ("<module>", target.path) and frames[-1][2] in module, frames
        assert 1 <= len(frames) <= 22, frames
        entered = line_of("recurse_forever.py", "def recurse")  # the innermost, at its first instruction
        for index, (function, file, line) in enumerate(frames[:-1]):
            assert (function, file) == ("recurse", target.path), frames
            assert line in body or (index == 0 and line == entered), frames
        assert not thread["changing"] and not thread["unreadable"] and not thread["truncated"]
        assert thread["holds_gil"] and thread["state"] == "running"


def test_text_form():
    with held(HOST) as target:
        result = run_tracer("dump", target.pid)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.startswith(f"Process {target.pid}: {HOST.python} {target.path}\n"
                           f"CPython 3.11.2 at {HOST.host_python}; stacks read in ")
    assert re.search(r"; stacks read in \d+\.\d ms, the process never paused\n", text)
    blocks = text.split("\n\n")[1:]
    (burner,) = [block for block in blocks if f"burner ({target.path}:" in block]
    assert re.match(r'Thread \d+ \(0x[0-9a-f]+\) "burner": running, holds the GIL\n'
                    rf"    burner \({re.escape(target.path)}:{line_of('held.py', 'burner burns')}\)\n"
                    r"    run \(/usr/lib/python3\.11/threading\.py:\d+\)\n", burner)
    (waiter,) = [block for block in blocks if f"waiter ({target.path}:" in block]
    assert re.match(r'Thread \d+ \(0x[0-9a-f]+\) "waiter": idle in futex\n', waiter)


def os_names(pid):
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            names[int(tid)] = comm.read().strip()
    return names


def expected_names(version):
    """Each role's Thread.name as dump shows it (None: a thread threading never knew)."""
    return {
        "main": "MainThread",
        "default": "Thread-1 (idle)" if version >= (3, 10) else "Thread-1",  # 3.10 added the target's name
        "ascii": "worker-1", "latin-1": "caf\xe9-worker", "ucs2": "worker-\u03b1", "ucs4": "snake-\U0001f40d",
        "long": "long-" + "x" * 251 + "\u2026",  # cut at 256 characters
        "renamed": "renamed", "dict-read": "dict-read", "many-attributes": "many-attributes",
        "dummy": "Dummy-2",  # threading's counter numbers dummies and default names alike
        "unknown to threading": None,
    }


def test_python_thread_names(every_interpreter):
    with Target("named_threads.py", interpreter=every_interpreter) as target:
        idents = idents_when_ready(target)
        result = run_tracer("dump", target.pid, "--json")
        kernel_names = os_names(target.pid)
    assert result.returncode == 0, result.stderr
    threads = {thread["thread_id"]: thread for thread in json.loads(result.stdout)["threads"]}
    assert sorted(threads) == sorted(idents.values())
    assert {role: threads[ident]["name"] for role, ident in idents.items()} == expected_names(every_interpreter.version)
    assert {thread["tid"]: thread["os_name"] for thread in threads.values()} == kernel_names


def thread_labels(document, suffix: str) -> dict[int, str]:
    """TID -> NAME of each profile of a speedscope document named `thread TID (NAME)` and then
    what matches suffix (a pattern)."""
    labels = {}
    for profile in json.loads(document.read_text())["profiles"]:
        tid, name = re.fullmatch(rf"thread (\d+) \((.*?)\){suffix}", profile["name"], re.S).groups()
        labels[int(tid)] = name
    return labels


def test_profile_labels_threads_by_their_python_names(tmp_path):
    """profile's per-thread output (here speedscope's profile names) labels each thread
    `thread TID (NAME)` with its Thread.name, read as dump reads it, and a thread threading
    never knew with its OS name."""
    document = tmp_path / "threads.speedscope.json"
    with Target("named_threads.py") as target:
        idents_when_ready(target)
        result = run_tracer("profile", target.pid, "--wall", "--per-thread", "--duration", "1", "-o", document)
        kernel_names = os_names(target.pid)
    assert result.returncode == 0, result.stderr
    labels = thread_labels(document, ": time on and off a CPU")
    assert sorted(labels) == sorted(kernel_names)
    expected = [name or kernel_names[target.pid] for name in expected_names(HOST.version).values()]
    assert sorted(labels.values()) == sorted(expected)


STACK_WORKERS = ["worker-1", "worker-\u03b1", "snake-\U0001f40d", "renamed"]  # named_workers.py's Thread names


@pytest.mark.parametrize("folded", [False, True], ids=["stream", "folded"])
def test_stack_labels_threads_by_their_python_names(interpreter, folded, tmp_path):
    """stack reads no stacks, only probes: its threads are named by TID, and matched to
    Thread.name through the interpreter's thread states (native_thread_id from 3.11, glibc's
    struct pthread before). A thread threading never knew keeps its OS name; Perfetto's
    process track keeps the process's."""
    document, trace = tmp_path / "threads.speedscope.json", tmp_path / "threads.trace.json"
    outputs = ["--folded", "--per-thread", "-o", document] if folded else ["-o", document, "-o", trace]
    with Target("named_workers.py", interpreter=interpreter) as target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("stack", target.pid, "--duration", "1", "--filename", "named_workers.py", *outputs)
        kernel_names = os_names(target.pid)
    assert result.returncode == 0, result.stderr
    suffix = r": .*" if folded else r"(?: \(\d+ [a-z ]+(?:, \d+ [a-z ]+)*\))?"  # its calls' inexact bounds
    labels = thread_labels(document, suffix)
    process_name = kernel_names[target.pid]
    assert set(labels) < set(kernel_names) and target.pid not in labels  # the main thread calls nothing
    assert sorted(labels.values()) == sorted(STACK_WORKERS + [process_name])
    if not folded:
        names = {(event["name"], event["tid"]): event["args"]["name"]
                 for event in json.loads(trace.read_text())["traceEvents"] if event["ph"] == "M"}
        assert names == {("process_name", target.pid): process_name,
                         **{("thread_name", tid): f"thread {tid} ({name})" for tid, name in labels.items()}}


def test_python_thread_names_in_text():
    with Target("named_threads.py") as target:
        idents = idents_when_ready(target)
        result = run_tracer("dump", target.pid)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    shown = {}
    for role, ident in idents.items():
        (line,) = re.findall(rf"^Thread \d+ \({ident:#x}\)(.*)$", text, re.M)
        shown[role] = line
    sleeping = ": idle in clock_nanosleep"
    assert shown == {
        "main": ' "MainThread": idle in read', "default": ' "Thread-1 (idle)"' + sleeping,
        "ascii": ' "worker-1"' + sleeping, "latin-1": ' "caf\xe9-worker"' + sleeping,
        "ucs2": ' "worker-\u03b1"' + sleeping, "ucs4": ' "snake-\U0001f40d"' + sleeping,
        "long": ' "long-' + "x" * 251 + '\u2026"' + sleeping, "renamed": ' "renamed"' + sleeping,
        "dict-read": ' "dict-read"' + sleeping, "many-attributes": ' "many-attributes"' + sleeping,
        "dummy": ' "Dummy-2"' + sleeping,
        "unknown to threading": sleeping,  # its OS name is the process's: none shown
    }


def test_threads_of_every_interpreter_are_named(every_interpreter):
    """A subinterpreter's thread named too; the main thread by the main interpreter's name,
    not the one a subinterpreter gave it."""
    if every_interpreter.version < (3, 8):
        pytest.skip("CPython 3.7 has no module that starts a subinterpreter")
    with Target("subinterpreter_threads.py", interpreter=every_interpreter) as target:
        idents = idents_when_ready(target)
        result = run_tracer("dump", target.pid, "--json")
    assert result.returncode == 0, result.stderr
    names = {thread["thread_id"]: thread["name"] for thread in json.loads(result.stdout)["threads"]}
    assert {name: names[ident] for name, ident in idents.items()} == {name: name for name in idents}
    # threads in subinterpreters: refused from 3.9 to 3.11
    assert ("sub-worker" in idents) == (every_interpreter.version == (3, 8) or every_interpreter.version >= (3, 12))


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


SLEEPS = {"230", "23", "270"}  # x86-64: time.sleep's clock_nanosleep (3.11+), select or pselect6 (before)


READS = {"0"}  # x86-64: read, as sys.stdin.readline waits


def wait_sleeping(pid: int, tid: int = 0, calls: set[str] = SLEEPS) -> None:
    """Until pid's thread tid (its main thread by default) waits in one of those system calls
    (time.sleep's by default)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{tid or pid}/syscall") as syscall:
            if syscall.read().split()[0] in calls:
                return
        time.sleep(0.01)
    raise AssertionError(f"thread {tid or pid} of PID {pid} never waited in {sorted(calls)}")


def test_a_thread_asleep_with_the_gil_holds_it(any_interpreter):
    """A thread that sleeps in C keeping the GIL is shown idle holding it, the thread it blocks
    waiting for it; threads that take it for a moment as they wake are not (test_hostile)."""
    with Target("gil_sleeper.py", interpreter=any_interpreter) as target:
        sleeper = int(target.process.stdout.readline())
        wait_sleeping(target.pid, sleeper, {"230", "35"})  # libc's sleep: clock_nanosleep, or nanosleep
        result = run_tracer("dump", "--json", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    threads = {thread["name"]: thread for thread in json.loads(result.stdout)["threads"]}
    assert sorted(threads) == ["MainThread", "sleeper"]
    assert threads["sleeper"]["state"] == "idle" and threads["sleeper"]["holds_gil"], threads["sleeper"]
    assert threads["sleeper"]["frames"][0]["function"] == "sleeper"
    main = threads["MainThread"]  # it wakes every switch interval (5 ms) to ask for the GIL, and sleeps again
    assert main["state"] in ("waiting for the GIL", "running") and not main["holds_gil"], main


def test_subprocesses_of_a_multiprocessing_parent(any_interpreter):
    """--subprocesses (py-spy's): the parent and its two forked children in one dump, a list
    in --json, each child's parent said; a child's stack goes back to where the parent forked."""
    target = Target("multiprocs.py", interpreter=any_interpreter)
    children = []
    try:
        with target:
            children = [int(pid) for pid in target.process.stdout.readline().split()]
            for child in children:  # told when it is about to sleep: wait until it does
                wait_sleeping(child)
            result = run_tracer("dump", str(target.pid), "--subprocesses", "--json")
    finally:
        for child in children:  # a parent killed leaves its children behind
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert result.returncode == 0, result.stderr
    dumps = json.loads(result.stdout)
    assert [(dump["pid"], dump["parent"]) for dump in dumps][1:] == [(child, target.pid) for child in children]
    assert dumps[0]["pid"] == target.pid
    for dump in dumps:
        assert dump["python"].startswith(f"{any_interpreter}.")
        (main,) = [thread for thread in dump["threads"] if thread["tid"] == dump["pid"]]
        frames = [(frame["function"], frame["line"]) for frame in main["frames"] if frame["file"] == target.path]
        if dump["pid"] == target.pid:
            assert frames == [("<module>", line_of("multiprocs.py", "parent waits"))]
        else:
            assert frames[0] == ("child_sleeps", line_of("multiprocs.py", "child sleeps"))
            assert frames[-1] == ("<module>", line_of("multiprocs.py", "parent starts"))


def test_subprocesses_through_a_shell():
    """A shell that runs Python: the shell is named as running no CPython, the Python dumped."""
    python = shlex.join(HOST.argv())  # in its chroot where it is the matrix's (Debian 13 has no python3.11)
    shell = subprocess.Popen(["bash", "-c", f"{python} -c 'import sys; print(1, flush=True); sys.stdin.read()'; true"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert shell.stdout.readline() == b"1\n"
        text = run_tracer("dump", str(shell.pid), "--subprocesses")
        document = run_tracer("dump", str(shell.pid), "--subprocesses", "--json")
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell and the Python under it
        shell.wait()
    assert text.returncode == 0, text.stderr
    blocks = text.stdout.decode().split("\n\n")
    assert blocks[0].startswith(f"Process {shell.pid}: bash -c ")
    assert blocks[0].endswith(f"\n[PID {shell.pid} is not a Python: it holds no CPython interpreter]")
    assert blocks[1].startswith("Process ") and f"CPython 3.11.2 at {HOST.host_python}" in blocks[1]
    assert blocks[2].splitlines() [1:] == ["    <module> (<string>:1)"]
    (shell_json, python_json) = json.loads(document.stdout)
    assert shell_json["python"] is None and shell_json["threads"] == [] and shell_json["pid"] == shell.pid
    assert python_json["parent"] == shell.pid and python_json["python"] == "3.11.2"


def test_subprocesses_with_no_python_among_them():
    sleeper = subprocess.Popen(["bash", "-c", "sleep 30; true"], start_new_session=True)
    try:
        result = run_tracer("dump", str(sleeper.pid), "--subprocesses")
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)  # the shell and its sleep
        sleeper.wait()
    assert result.returncode == 4
    assert result.stderr == f"pybpftrace: PID {sleeper.pid} (bash): no CPython in it or in its 1 descendants\n".encode()


BEYOND_REPR = {  # what dump --locals shows where repr() goes beyond its bounds, or names no type
    "long_text": repr("x" * 200) + "...(500 characters)",
    "many": "[" + ", ".join(map(str, range(20))) + ", ...]",
    "deep": "[[[[[...]]]]]",
}


def test_locals_are_each_variables_repr(every_interpreter):
    """--locals (py-spy's): every argument (flagged) and local of a sleeping frame, each as
    repr() prints it in the target itself, within the stated bounds; other objects as
    <TypeName at 0x…>."""
    target = Target("locals.py", interpreter=every_interpreter)
    with target:
        expected = json.loads(target.process.stdout.readline())
        wait_sleeping(target.pid)  # it printed just before its sleep
        result = run_tracer("dump", "--locals", "--json", str(target.pid))
        text = run_tracer("dump", "--locals", str(target.pid))
    assert result.returncode == 0, result.stderr
    (thread,) = json.loads(result.stdout)["threads"]
    if every_interpreter.version < (3, 8):
        assert thread["locals_note"] == "--locals reads CPython 3.8 to 3.15"
        return
    frame = thread["frames"][0]
    assert (frame["function"], frame["line"]) == ("local_variable_lookup", line_of("locals.py", "sleeps"))
    variables = {variable["name"]: variable for variable in frame["locals"]}
    assert {name: variable["repr"] for name, variable in variables.items() if name in expected} == expected
    for name, shown in BEYOND_REPR.items():
        assert variables[name]["repr"] == shown
    assert re.fullmatch(r"<Thing at 0x[0-9a-f]+>", variables["thing"]["repr"])
    assert re.fullmatch(r"<function at 0x[0-9a-f]+>", variables["captured"]["repr"])
    assert sorted(name for name, variable in variables.items() if variable["arg"]) == \
        ["arg1", "arg2", "args", "keyword", "options"]
    assert len(variables) == len(frame["locals"]) == len(expected) + len(BEYOND_REPR) + 3  # thing, captured, shown
    assert all("locals" in frame for frame in thread["frames"])
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    start = lines.index("        Arguments:")
    assert lines[start + 1] == f"            arg1: {expected['arg1']}"
    assert f"            integer: 42" in lines[start:]


def test_qualified_names(any_interpreter):
    """--qualnames: functions named as CPython 3.11+ qualifies them (co_qualname), as py-spy and
    CPython's own tools name them; before 3.11, which has none, by their names."""
    target = Target("qualnames.py", interpreter=any_interpreter)
    with target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("dump", "--qualnames", "--json", str(target.pid))
    assert result.returncode == 0, result.stderr
    (thread,) = json.loads(result.stdout)["threads"]
    functions = [frame["function"] for frame in thread["frames"] if frame["file"] == target.path]
    qualified = any_interpreter.version >= (3, 11)
    assert functions == (["Shop.serve.<locals>.inner", "Shop.serve", "<module>"] if qualified
                         else ["inner", "serve", "<module>"])


def test_qualified_names_in_a_trace(interpreter):
    """--qualnames names the calls the exact tracer follows too."""
    target = Target("qualnames.py", interpreter=interpreter)
    run = trace_held(target, "stack", PID, "--qualnames", "--folded", "--filename", "qualnames.py")
    assert run.code == 0, run.stderr
    stacks = [line.rsplit(" ", 1)[0] for line in run.stdout.splitlines() if "inner" in line]
    inner = "Shop.serve.<locals>.inner" if interpreter.version >= (3, 11) else "inner"
    assert stacks and all(stack.split(";")[-1].startswith(f"{inner} (") for stack in stacks), stacks


UNICODE_SCRIPT = "юникод_💩.py"


def test_unicode_names(any_interpreter):
    """py-spy's unicode test: a file named with an emoji, a function named in Cyrillic, in dump
    --json exactly, and in profile's stacks."""
    target = Target(UNICODE_SCRIPT, interpreter=any_interpreter)
    assert target.process.stdout.readline() == b"ready\n"
    wait_sleeping(target.pid, calls=READS)  # it printed just before it reads
    result = run_tracer("dump", "--json", str(target.pid))
    run = trace_held(target, "profile", PID)
    assert result.returncode == 0, result.stderr
    (thread,) = json.loads(result.stdout)["threads"]
    assert [(frame["function"], frame["file"], frame["line"]) for frame in thread["frames"]] == [
        ("функция", target.path, line_of(UNICODE_SCRIPT, "функция ждёт")),
        ("<module>", target.path, line_of(UNICODE_SCRIPT, "модуль зовёт"))]
    assert run.code == 0, run.stderr
    stacks = folded_weights(run.stdout)
    assert stacks[f"<module> ({target.path}:1);функция ({target.path}:{line_of(UNICODE_SCRIPT, 'def функция')})"] > 0


def test_negative_line_offsets(any_interpreter):
    """py-spy's negative line offsets test: the line of a frame asleep inside a call written
    over several lines, in a loop, is the line CPython itself gives that frame."""
    target = Target("negative_offsets.py", interpreter=any_interpreter)
    with target:
        tid = int(target.process.stdout.readline())
        wait_sleeping(target.pid, tid)
        target.go()
        line = int(target.process.stdout.readline())
        result = run_tracer("dump", "--json", str(target.pid))
    assert result.returncode == 0, result.stderr
    (thread,) = [thread for thread in json.loads(result.stdout)["threads"] if thread["ns_tid" if "ns_tid" in thread
                                                                                      else "tid"] == tid]
    assert (thread["frames"][0]["function"], thread["frames"][0]["line"]) == ("sleeper", line)
