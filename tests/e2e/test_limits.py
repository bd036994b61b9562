"""What the kernel's fixed-size state cannot hold, and ids that are reused: every number is
right, or the summary line says what is missing and why (the README's "What can be lost")."""

import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from pybpftrace.events import PROCESS_EVENT
from pybpftrace.exits import TAKE_SECONDS
from pybpftrace.rings import PROCESS_PAGES
from support import (
    HOST,
    TIMEOUT,
    copied,
    PID,
    Interpreter,
    WITH_FUNCTION_PROBES,
    Target,
    Tracer,
    wait_reading_stdin,
    line_of,
    summary_line,
    folded_weights,
    json_records,
    trace_held,
    weight_of,
)


def calls_of(stdout):
    """calls --json: its rows."""
    (functions,) = [record["functions"] for record in json_records(stdout)]
    return functions


def label(interpreter, name, function, marker):
    return f"{function} ({interpreter.script(name)}:{line_of(name, marker)})"


def with_map_sizes(sizes):
    """The environment for a tracer whose maps are this small (session.MAP_SIZES)."""
    return dict(os.environ, PYBPFTRACE_MAP_SIZES=sizes)


def nothing_lost(stderr):
    return re.search(r", 0 lost(,| \[)", summary_line(stderr))


def assert_dropped(stderr, why):
    """The summary says N events were lost, and all N for this reason (a regex following the
    count): a named, counted loss."""
    match = re.search(r", (\d+) lost \[(?:.*; )?(\d+) " + why, summary_line(stderr))
    assert match and match.group(1) == match.group(2) and int(match.group(1)) > 0, summary_line(stderr)


@pytest.fixture(scope="module")
def own_python(tmp_path_factory) -> Interpreter:
    """A copy of the traced CPython, for --binary: only this test's processes run it (other
    Pythons on a shared machine would flood the trace). Beside the original, in its chroot
    where it has one (its standard library is found from where it runs)."""
    with copied(HOST, tmp_path_factory.mktemp("python"), f"python{HOST}") as copy:
        yield copy


# 1. the names ring full: the folded tree keeps every call ------------------------------------


def test_folded_keeps_every_call_when_names_cannot_be_sent():
    """The tracer stopped (SIGSTOP) while the target makes 20,000 new call paths: the codes
    ring fills, the paths are kept all the same, and those whose code objects' names never came
    are named [code object not announced] and counted."""
    count = 20000
    with Target("many_functions.py", str(count)) as target:
        tracer = Tracer("stack", target.pid, "--folded", "--weight", "calls")
        tracer.wait_attached()
        target.go()
        assert target.process.stdout.readline() == b"ready\n"
        tracer.signal(signal.SIGSTOP)
        target.go()
        out, _ = target.finish()
        tracer.signal(signal.SIGCONT)
        code, stdout, stderr = tracer.finish()
    assert (code, out) == (0, f"{count}\n".encode())
    weights = folded_weights(stdout)
    leaf = label(HOST, "many_functions.py", "leaf", "def leaf")
    assert weight_of(weights, leaf) == count, summary_line(stderr)
    callers = Counter()
    for stack, weight in weights.items():
        if stack.endswith(leaf):
            callers[stack.rsplit(";", 2)[-2]] += weight
    unnamed = callers.pop("[code object not announced]", 0)
    assert all(re.fullmatch(r"many_\d+ \(<string>:\d+\)", caller) and calls == 1 for caller, calls in callers.items())
    assert len(callers) >= 1000 and unnamed and len(callers) + unnamed == count
    summary = summary_line(stderr)
    lost = re.search(r"(\d+) events of code objects that could not be announced \(the codes ring buffer was full\)",
                     summary)
    assert lost and int(lost.group(1)) >= unnamed  # each unnamed call's entry (its return takes the entry's id)
    assert ", 0 lost [" in summary


# 2. more threads alive than the kernel used to keep -------------------------------------------


@pytest.mark.parametrize("command", [("calls", "--json", "--top", "100000"), ("stack", "--folded", "--weight", "calls")])
def test_thousands_of_live_threads_are_counted_exactly(command):
    threads = 5000
    run = trace_held(Target("many_threads.py", str(threads)), command[0], PID, *command[1:])
    assert (run.code, run.target_output) == (0, f"{threads}\n".encode())
    if command[0] == "calls":
        (work,) = [row for row in calls_of(run.stdout) if row["function"] == "work"]
        assert (work["calls"], work["timed_calls"]) == (threads, threads)
    else:
        assert weight_of(folded_weights(run.stdout), label(HOST, "many_threads.py", "work", "def work")) == threads
    assert nothing_lost(run.stderr)


def test_threads_beyond_the_map_are_dropped_and_counted():
    threads = 40
    run = trace_held(Target("many_threads.py", str(threads)), "calls", PID, "--json", "--top", "100000",
                     env=with_map_sizes("thread_frames=16"))
    assert run.code == 0
    (work,) = [row for row in calls_of(run.stdout) if row["function"] == "work"]
    # at most 16 threads at once have a stack: those entering work() without one are not
    # timed (a thread exiting frees its entry: later returns are counted, untimed)
    assert work["timed_calls"] <= 16 and work["timed_calls"] <= work["calls"] <= threads
    assert_dropped(run.stderr, r"events of threads beyond 16 live ones dropped: the thread_frames map was full\]")


def test_stream_threads_beyond_the_map_are_dropped_and_counted():
    run = trace_held(Target("many_threads.py", "40"), "stack", PID, "-o", "/dev/null",
                     env=with_map_sizes("thread_frames=16"))
    assert run.code == 0
    assert_dropped(run.stderr, r"events of threads beyond 16 live ones dropped: the thread_frames map was full\]")


# 3. a reused PID starts afresh ----------------------------------------------------------------


def spawn_with_pid(pid, argv, **options):
    """A process given this PID (free again): the kernel gives the one after ns_last_pid, unless
    another process on the machine was quicker; then again."""
    for _ in range(1000):
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(pid - 1))
        process = subprocess.Popen(argv, **options)
        if process.pid == pid:
            return process
        process.kill()
        process.wait()
    pytest.fail(f"PID {pid} could not be had again")


@pytest.mark.parametrize("after", [0, TAKE_SECONDS + 2], ids=["at once", "after the dead is taken"])
@pytest.mark.parametrize("options", [("--json",), ("--folded", "--weight", "calls")], ids=["stream", "folded"])
def test_a_reused_pid_does_not_inherit_the_dead_process_stack(options, after, own_python):
    """Under --binary, a process killed inside two calls, then a new one given its PID: the new
    one's calls are its own, at its own depths. Started once the tracer has taken the dead's
    part (and forgotten its code objects), its start-up is named all the same: a non-PIE
    Python's static code objects (3.11's deep-frozen modules) are alike in both (the Debian 13
    VM's failure, where the tracer took the dead's part early, under TCG)."""
    tracer = Tracer("stack", "--binary", own_python.host_python, "--filename", "reuse.py", *options)
    tracer.wait_attached()
    dead = subprocess.Popen(own_python.command("reuse.py", "block"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert dead.stdout.readline() == b"blocked\n"
    dead.kill()
    dead.wait()
    time.sleep(after)  # exits are taken every TAKE_SECONDS at most
    reborn = spawn_with_pid(dead.pid, own_python.command("reuse.py", "run"), stdout=subprocess.PIPE)
    assert reborn.communicate(timeout=60)[0] == b"1\n"
    time.sleep(0.1)  # let the tracer drain its last events (the summary says what it saw)
    tracer.signal()
    code, stdout, stderr = tracer.finish()
    assert code == 0
    module = f"<module> ({HOST.script('reuse.py')}:1)"
    fresh = label(HOST, "reuse.py", "fresh", "def fresh")
    if "--json" in options:
        events = [(e["pid"], e["event"], e["function"], e["depth"]) for e in json_records(stdout)]
        assert [event for event in events if event[2] == "fresh"] == [
            (dead.pid, "call", "fresh", 1), (dead.pid, "return", "fresh", 1)]
    else:
        weights = folded_weights(stdout)
        outer, inner = (label(HOST, "reuse.py", f, f"def {f}") for f in ("outer", "inner"))
        assert weights == {module: 2, f"{module};{outer}": 1, f"{module};{outer};{inner}": 1, f"{module};{fresh}": 1}
    assert nothing_lost(stderr)


def test_a_process_gone_before_its_code_objects_are_read_is_named():
    """The tracer stopped while the target's first event (a call, under calls it was in when
    the tracer attached) announces its code objects, from a walk of its stack, and it exits:
    they are read after it has gone, and still name its calls at the end (they went with
    its PID's, before its calls were named)."""
    target = Target("seeded_exit.py")
    tracer = None
    try:
        wait_reading_stdin(target.pid)
        tracer = Tracer("stack", str(target.pid), "--folded", "--weight", "calls")
        tracer.wait_attached()
        tracer.pause()
        target.go()
        target.finish()
        tracer.signal(signal.SIGCONT)
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
        if tracer is not None and tracer.process.poll() is None:
            tracer.signal(signal.SIGKILL)
    assert code == 0, stderr
    module = f"<module> ({HOST.script('seeded_exit.py')}:1)"
    outer, inner, done = (label(HOST, "seeded_exit.py", f, f"def {f}") for f in ("outer", "inner", "done"))
    assert folded_weights(stdout) == {f"{module};{outer};{inner};{done}": 1}, stderr
    assert nothing_lost(stderr)


# 4. a string's address reused: never a wrong name ---------------------------------------------

REUSED = 200  # functions made by exec and freed, one after another


def unique_names(names, stderr: str = ""):
    """uniq_N names as they came, checked to be uniq_0 ... uniq_{REUSED - 1} once each (the
    tracer's stderr shown if not: its summary says what was lost)."""
    assert sorted(names, key=lambda name: int(name.split("_")[1])) == [f"uniq_{index}" for index in range(REUSED)], \
        stderr


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_reused_name_addresses_stream(interpreter):
    interpreter.prepare()
    run = trace_held(Target("reused_names.py", str(REUSED), interpreter=interpreter), "stack", PID, "--json")
    assert run.code == 0 and run.target_output == f"{sum(range(REUSED))}\n".encode()
    calls = [e["function"] for e in json_records(run.stdout) if e["event"] == "call" and e["function"].startswith("uniq_")]
    returns = [e["function"] for e in json_records(run.stdout) if e["event"] == "return" and e["function"].startswith("uniq_")]
    assert calls == returns == [f"uniq_{index}" for index in range(REUSED)]


@pytest.mark.parametrize("command", [("stack", "--folded", "--weight", "calls"), ("calls", "--json", "--top", "100000"),
                                     ("top", "--json", "--top", "100000")], ids=["folded", "calls", "top"])
def test_reused_name_addresses_aggregated(command):
    run = trace_held(Target("reused_names.py", str(REUSED)), command[0], PID, *command[1:])
    assert run.code == 0 and run.target_output == f"{sum(range(REUSED))}\n".encode()
    if command[0] == "stack":
        weights = folded_weights(run.stdout)
        found = {}
        for stack, weight in weights.items():
            match = re.search(r";(uniq_\d+) \(<string>:1\)$", stack)
            if match:
                found[match.group(1)] = found.get(match.group(1), 0) + weight
        unique_names(list(found))
        assert set(found.values()) == {1}
    else:
        # top's records add up to the run: a function sampled in one interval may have its call
        # counted in the next (a slow guest makes that likely), so the calls are summed per name
        calls: Counter = Counter()
        for record in json_records(run.stdout):
            for row in record["functions"]:
                if row["function"].startswith("uniq_"):
                    calls[row["function"]] += row["calls"]
        unique_names(list(calls), run.stderr)
        assert set(calls.values()) == {1}, (calls, run.stderr)


# 5. full maps: named, with what they cost -----------------------------------------------------


def test_calls_with_its_functions_maps_full():
    """What does not fit in functions goes to spilled_functions (where functions the kernel
    has no memory for go too); beyond both, calls are counted as lost."""
    count = 300
    run = trace_held(Target("many_functions.py", str(count)), "calls", PID, "--json", "--top", "100000",
                     releases=2, env=with_map_sizes("functions=64,spilled_functions=16"))
    assert run.code == 0 and run.target_output == f"ready\n{count}\n".encode()
    assert len(calls_of(run.stdout)) == 64 + 16
    assert_dropped(run.stderr, r"calls not counted: the functions \(64\) and spilled_functions \(16\) maps were full\]")


def test_folded_with_its_nodes_map_full_keeps_every_call():
    """The paths that do not fit are merged under a frame saying so: the calls all counted."""
    count = 300
    run = trace_held(Target("many_functions.py", str(count)), "stack", PID, "--folded", "--weight", "calls",
                     releases=2, env=with_map_sizes("nodes=64"))
    assert run.code == 0
    weights = folded_weights(run.stdout)
    calls = label(HOST, "many_functions.py", "<genexpr>", "many calls")
    below = {stack: weight for stack, weight in weights.items() if f";{calls};" in stack}
    lost = sum(weight for stack, weight in below.items() if stack.endswith(";[paths not kept: the nodes map was full]"))
    assert lost and sum(below.values()) == 2 * count  # each many_N, and the leaf() it calls
    note = re.search(r"(\d+) calls shown as \[paths not kept: the nodes map was full\]: the nodes map \(64 call "
                     r"paths\) was full", summary_line(run.stderr))
    assert note and int(note.group(1)) == sum(weight for stack, weight in weights.items()
                                              if stack.endswith(";[paths not kept: the nodes map was full]"))
    assert nothing_lost(run.stderr)


def test_folded_with_no_room_for_lost_paths_counts_what_it_dropped():
    """Each thread's paths not kept need a lost path of their own: with room for one, the
    others' calls are dropped, and counted."""
    run = trace_held(Target("many_threads.py", "40"), "stack", PID, "--folded",
                     env=with_map_sizes("nodes=16,lost_paths=1"))
    assert run.code == 0
    assert_dropped(run.stderr, r"calls not counted: the nodes and lost_paths maps were full")


def test_folded_with_its_roots_map_full():
    """Threads beyond the roots map: their calls all counted, under a frame saying so."""
    threads = 20
    run = trace_held(Target("many_threads.py", str(threads)), "stack", PID, "--folded", "--weight", "calls",
                     env=with_map_sizes("roots=4"))
    assert run.code == 0
    weights = folded_weights(run.stdout)
    assert weight_of(weights, label(HOST, "many_threads.py", "work", "def work")) == threads
    assert any(stack.startswith("[root not kept: the roots map was full];") for stack in weights)
    assert re.search(r"\d+ threads without a root: the roots map \(4\) was full", summary_line(run.stderr))


def test_top_with_its_counts_map_full():
    run = trace_held(Target("many_functions.py", "300"), "top", PID, "--json", releases=2,
                     env=with_map_sizes("counts=32"))
    assert run.code == 0
    assert_dropped(run.stderr, r"entries not counted: the counts map \(32\) was full\]")


def test_names_evicted_from_the_kernel_cache_are_sent_again():
    """known_names is an LRU: an evicted pair is announced again, and every name stays right."""
    count = 300
    run = trace_held(Target("many_functions.py", str(count)), "stack", PID, "--json", releases=2,
                     env=with_map_sizes("known_names=16"))
    assert run.code == 0
    many = [e["function"] for e in json_records(run.stdout) if e["event"] == "call" and e["function"].startswith("many_")]
    assert many == [f"many_{index}" for index in range(count)]
    assert nothing_lost(run.stderr)


def test_processes_beyond_the_incarnations_map_are_counted(own_python):
    tracer = Tracer("stack", "--binary", own_python.host_python, "-o", "/dev/null", env=with_map_sizes("incarnations=1"))
    tracer.wait_attached()
    interpreter = own_python
    with Target("forever.py", interpreter=interpreter) as first, Target("forever.py", interpreter=interpreter) as second:
        time.sleep(0.5)  # both run a while under the tracer
        for target in (first, second):
            target.go()
            target.finish()
    tracer.signal()
    code, _, stderr = tracer.finish()
    assert code == 0
    assert re.search(r"\d+ events of processes beyond 1 live ones: the incarnations map was full", summary_line(stderr))


def test_calls_of_processes_beyond_the_py_processes_map_are_dropped_and_counted(own_python):
    """Following calls, each process registers itself at its first event: with room for one,
    the other's events are dropped and counted, the map named."""
    tracer = Tracer("calls", "--binary", own_python.host_python, "--json", env=with_map_sizes("py_processes=1"))
    tracer.wait_attached()
    with Target("forever.py", interpreter=own_python) as first, Target("forever.py", interpreter=own_python) as second:
        for target in (first, second):
            target.process.stdin.write(b"beat?\n")  # each has run under the tracer
            target.process.stdin.flush()
        for target in (first, second):
            assert target.process.stdout.readline() == b"beat\n"
    tracer.signal()
    code, _, stderr = tracer.finish()
    assert code == 0, stderr
    assert_dropped(stderr, r"events of processes beyond 1 followed at once dropped: the py_processes map was full")


@pytest.mark.parametrize("kept", [8, 1])
def test_threads_that_exit_with_calls_open(kept):
    """A process that exits under threads with calls open: their calls' time is counted up to
    the exit (ended_frames), and the threads the map cannot keep are counted."""
    threads = 4
    run = trace_held(Target("stuck.py", str(threads)), "stack", PID, "--folded", "--filename", "stuck.py",
                     env=with_map_sizes(f"ended_frames={kept}"))
    assert run.code == 0
    weights = folded_weights(run.stdout)
    worker, stuck = (label(HOST, "stuck.py", f, f"def {f}") for f in ("worker", "stuck"))
    timed = [stack for stack, weight in weights.items() if stack.endswith(f"{worker};{stuck}") and weight > 0]
    assert len(timed) == 1  # the threads merge
    note = re.search(r"(\d+) threads exited with calls open whose time up to their exit is not counted: the "
                     r"ended_frames map \((\d+)\) was full", summary_line(run.stderr))
    if kept > threads:
        assert note is None
    else:  # and the main thread, in its module's frame (read from memory when first seen)
        assert note and int(note.group(1)) == threads + 1 - kept


def test_processes_beyond_the_py_processes_map_are_counted_not_read():
    """With room for one process's interpreter, a Python and the two children it forks (one
    before tracing, one after) are one process read and two counted, with the map named."""
    target = Target("busy_children.py", "0.5")
    run = trace_held(target, "profile", PID, "--subprocesses", "--json", env=with_map_sizes("py_processes=1"))
    assert run.code == 0, run.stderr
    early, late = map(int, run.target_output.split())
    read = {stack["pid"] for stack in json.loads(run.stdout)["stacks"]}
    assert len(read) == 1 and read < {target.pid, early, late}, read
    assert "2 processes not read: the py_processes map (1) was full" in summary_line(run.stderr), run.stderr


def test_forks_beyond_the_process_events_ring_are_counted_not_lost_events():
    """The tracer stopped while the Python it reads forks more children than the ring of
    execs and forks holds: what did not fit is counted as such, not as samples lost."""
    forks = 2500
    holds = PROCESS_PAGES * mmap.PAGESIZE // (PROCESS_EVENT.size + 8)  # each record: an 8-byte header
    with Target("fork_burst.py", str(forks)) as target:
        tracer = Tracer("profile", target.pid, "--subprocesses")
        tracer.wait_attached()
        tracer.pause()
        target.go()
        assert target.process.stdout.readline() == f"{forks}\n".encode()
        tracer.signal(signal.SIGCONT)
        tracer.signal(signal.SIGINT)
        code, _, stderr = tracer.finish()
    assert code == 0, stderr
    summary = summary_line(stderr)
    untold = re.search(r"(\d+) execs and forks not heard of: the process_events ring buffer was full \(a Python "
                       r"started then may not be read\)", summary)
    # at least those beyond what the ring holds (the machine's other forks fill it too, under roots)
    assert untold and int(untold[1]) >= forks - holds, summary
    assert nothing_lost(stderr), summary


# 6. process churn: what the tracer keeps of a process goes when the process does -------------


@pytest.mark.parametrize("command", [("calls", "--json", "--top", "100000"), ("stack", "--folded", "--weight", "calls"),
                                     ("stack", "--json"), ("top", "--json", "--interval", "30", "--top", "100000")],
                         ids=["calls", "folded", "stream", "top"])
def test_processes_that_exit_are_taken_as_they_go(command, own_python):
    """Under --binary, 20 processes one after another: what each did is counted exactly, taken
    out of the kernel's maps as each exits (calls merges their rows: PID -)."""
    runs = 20
    tracer = Tracer(*command[:1], "--binary", own_python.host_python, *command[1:])
    tracer.wait_attached()
    for _ in range(runs):
        done = subprocess.run(own_python.command("calls.py"), input=b"go\n", capture_output=True, timeout=60)
        assert done.stdout == b"14\n"
    tracer.signal()
    code, stdout, stderr = tracer.finish()
    assert code == 0
    if command[0] == "calls":
        (leaf,) = [row for row in calls_of(stdout) if row["function"] == "leaf" and row["file"] == HOST.script("calls.py")]
        assert (leaf["pid"], leaf["processes"], leaf["calls"], leaf["timed_calls"]) == (None, runs, 3 * runs, 3 * runs), (
            summary_line(stderr))
        assert f"the rows of {runs} processes that exited are merged by function (PID -)" in summary_line(stderr)
    elif "--folded" in command:
        leaf = label(HOST, "calls.py", "leaf", "def leaf")
        assert weight_of(folded_weights(stdout), leaf) == 3 * runs
    elif command[0] == "top":
        leaves = [row for record in json_records(stdout) for row in record["functions"]
                  if row["function"] == "leaf" and row["file"] == HOST.script("calls.py")]
        assert sum(row["calls"] for row in leaves) == 3 * runs and len({row["pid"] for row in leaves}) == runs
    else:
        leaves = [e for e in json_records(stdout)
                  if e["function"] == "leaf" and e["file"] == HOST.script("calls.py") and e["event"] == "call"]
        assert len(leaves) == 3 * runs and len({e["pid"] for e in leaves}) == runs
    assert nothing_lost(stderr)


def test_text_stream_of_many_processes_has_a_pid_column(own_python):
    tracer = Tracer("stack", "--binary", own_python.host_python, "--filename", "calls.py")
    tracer.wait_attached()
    done = subprocess.run(own_python.command("calls.py"), input=b"go\n", capture_output=True, timeout=60)
    tracer.signal()
    code, stdout, _ = tracer.finish()
    assert code == 0 and done.stdout == b"14\n"
    header, *lines = stdout.splitlines()
    assert header == "     TIME(s)      PID      TID  CALL"
    assert lines and all(re.match(r" +\d+\.\d{6} +\d+ +\d+  ", line) for line in lines)
    top = label(HOST, "calls.py", "top", "def top")
    assert any(line.endswith(f"=> {top}") for line in lines)


# A tracer whose walker is looked at from inside (no output says how many processes it keeps):
# `count` busy Pythons of the binary argv[1] (started by the command argv[2]: a chroot's run in it),
# each killed once the walker has registered it and its code objects were announced; then it
# waits until the walker has forgotten them all (or the tests' wait has passed), and stops.
FORGETTING_DRIVER = """
import json, os, signal, subprocess, sys, threading, time
from pybpftrace.formats.options import Output, Outputs
from pybpftrace.sampling import Sampling
from pybpftrace.session import TraceOptions, run_tool
from pybpftrace.target import TargetOptions
from pybpftrace.tools.profile import SPEC, Profile, ProfileOptions

python, command, count, wait = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
options = ProfileOptions(TraceOptions(TargetOptions(binaries=[python])), Outputs([Output("folded", os.devnull)]))
sessions, gone, kept, announced, codes_kept = [], [], [], [], []

def until(condition):
    deadline = time.monotonic() + wait
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)

def churn():
    until(lambda: sessions and sessions[0].start)
    walker, codes = sessions[0].walker, sessions[0].rings.codes
    coded = lambda: {pid for pid, _ in codes.processes()}
    for _ in range(count):
        child = subprocess.Popen([*command, "-c", "while True: pass"])
        until(lambda: child.pid in walker.registered and child.pid in coded())
        if child.pid in coded():
            announced.append(child.pid)
        child.kill()
        child.wait()
        gone.append(child.pid)
    until(lambda: not set(gone) & walker.registered.keys())
    kept.extend(pid for pid in gone if pid in walker.registered)
    codes_kept.extend(pid for pid in gone if pid in coded())
    os.kill(os.getpid(), signal.SIGINT)

def profile(session):
    sessions.append(session)
    return Profile(session, options)

threading.Thread(target=churn, daemon=True).start()
code = run_tool("profile", SPEC, None, options.trace, profile, sampling=Sampling(rate=99))
print(json.dumps({"code": code, "gone": gone, "kept": kept, "announced": announced, "codes_kept": codes_kept}))
"""


def test_the_walker_forgets_processes_as_they_go(own_python):
    """What the frame walker keeps of a process (its interpreter, its GIL) goes once the
    process has: 20 Pythons of a binary, each read, then gone, leave nothing behind; but not
    their code objects, which profile names their samples with at the end."""
    count = 20
    run = subprocess.run([sys.executable, "-c", FORGETTING_DRIVER, own_python.host_python, json.dumps(own_python.argv()),
                          str(count), str(TIMEOUT)], capture_output=True, text=True, timeout=10 * TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert (result["code"], len(result["gone"]), result["kept"]) == (0, count, []), run.stderr
    assert result["announced"] == result["codes_kept"] == result["gone"], run.stderr


# 7. CPython 3.15: resumptions by throw() and close() ------------------------------------------


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_folded_counts_resumptions_by_throw_and_close_as_calls_does(interpreter):
    interpreter.prepare()
    folded = trace_held(Target("throws.py", interpreter=interpreter), "stack", PID, "--folded", "--weight", "calls",
                        "--filename", "throws.py")
    calls = trace_held(Target("throws.py", interpreter=interpreter), "calls", PID, "--json")
    assert folded.code == calls.code == 0
    numbers = label(interpreter, "throws.py", "numbers", "def numbers")
    (row,) = [row for row in calls_of(calls.stdout) if row["function"] == "numbers"]
    assert row["calls"] == weight_of(folded_weights(folded.stdout), numbers) == 12  # 3 nexts, 6 throws, 3 closes


# 8. recursion deeper than the kernel's shadow stack -------------------------------------------


def test_folded_recursion_deeper_than_the_shadow_stack():
    """The module's frame (it began before tracing, read from memory) and down(5010) ...
    down(0): 5011 calls, the first 127 kept as frames under the module's, the rest by function
    under one frame that stands for them."""
    depth = 5010
    run = trace_held(Target("recursion.py", str(depth)), "stack", PID, "--folded", "--weight", "calls",
                     "--filename", "recursion.py")
    assert run.code == 0 and run.target_output == f"{depth}\n".encode()
    down = label(HOST, "recursion.py", "down", "def down")
    module = f"<module> ({HOST.script('recursion.py')}:1)"
    kept = [f"{module};" + ";".join([down] * level) for level in range(1, 128)]
    assert folded_weights(run.stdout) == {
        **{stack: 1 for stack in kept}, f"{kept[-1]};[deeper than 128 frames];{down}": depth + 1 - 127}
    assert (f"{depth + 1 - 127} calls deeper than 128 frames, under one frame below the 128th: [deeper than 128 "
            "frames] (counted by function below it, timed as one)") in summary_line(run.stderr)


def test_folded_time_below_the_shadow_stack_goes_to_the_frame_standing_for_it():
    run = trace_held(Target("recursion.py", "3000"), "stack", PID, "--folded", "--filename", "recursion.py")
    assert run.code == 0
    weights = folded_weights(run.stdout)
    down = label(HOST, "recursion.py", "down", "def down")
    deep = [weight for stack, weight in weights.items() if stack.endswith(";[deeper than 128 frames]")]
    kept = [weight for stack, weight in weights.items() if stack.endswith(down)]
    assert len(kept) == 127 and len(deep) == 1 and deep[0] > max(kept)  # 2,874 calls' time, more than one's


def test_calls_recursion_deeper_than_the_shadow_stack():
    depth = 5010
    run = trace_held(Target("recursion.py", str(depth)), "calls", PID, "--json")
    assert run.code == 0
    (down,) = [row for row in calls_of(run.stdout) if row["function"] == "down"]
    assert (down["calls"], down["timed_calls"]) == (depth + 1, 127)  # under the module's frame
    assert f"{depth + 1 - 127} calls deeper than 128 frames counted but not timed" in summary_line(run.stderr)


def test_a_full_off_cpu_map_names_the_threads_it_could_not_track():
    """With room for the wait states of two threads, the rest of a target's threads are not
    tracked: the summary says how many times a thread's waits could not be, and which map was
    full, and the threads that were tracked still have their waits."""
    target = Target("waits.py", interpreter=HOST)
    run = trace_held(target, "profile", PID, "--off-cpu", env=with_map_sizes("off_cpu=2"))
    assert run.code == 0, run.stderr
    untracked = re.search(r"(\d+) times a thread's waits could not be tracked \(the off_cpu map was full\)",
                          summary_line(run.stderr))
    assert untracked and int(untracked[1]) > 0, run.stderr
    assert sum(folded_weights(run.stdout).values()) > 0, run.stdout
