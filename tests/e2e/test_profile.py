"""profile: sampled Python stacks read out of the interpreter's memory, on every CPython the
walker knows, probes or not: shares against the target's own timing, nesting, lines, deep
stacks, code objects freed and reused, agreement with the exact tracer, bad input."""

import json
import shlex
import re
import signal
import subprocess
from collections import Counter

import pytest

from support import (
    HOST,
    PID,
    WITH_FUNCTION_PROBES,
    Target,
    Tracer,
    folded_weights,
    line_of,
    pyenv_interpreter,
    run_tracer,
    summary_line,
    trace_held,
)

SHARES = {"func_a": 0.5, "func_b": 0.3, "func_c": 0.2}


def label(target, function, marker):
    return f"{function} ({target.path}:{line_of('shares.py', marker)})"


def test_shares_match_the_scripts_own_timing(every_interpreter):
    """At the default rate over 5 s, each function's share of the samples is within 2 points
    of its share of the CPU time the script measured for itself, and every stack nests as
    called: <module>;main;func_X;timed;spin."""
    target = Target("shares.py", "5.5", interpreter=every_interpreter)
    run = trace_held(target, "profile", PID, "--duration", "5")
    assert run.code == 0, run.stderr
    spent = json.loads(run.target_output)
    weights = folded_weights(run.stdout)
    (module,) = {stack.split(";")[0] for stack in weights if stack.startswith("<module> (")}
    main = label(target, "main", "def main")
    spin = label(target, "spin", "def spin")
    timed = label(target, "timed", "def timed")
    in_functions = {}
    for function in SHARES:
        stack = f"{module};{main};{label(target, function, f'def {function}')};{timed};{spin}"
        in_functions[function] = weights[stack]
    total = sum(in_functions.values())
    # what burns outside the three functions' spins: the loop between them, a sample or two
    assert total >= 0.97 * sum(weights.values()), weights
    assert total >= 200, f"too few samples for shares: {weights}"
    for function in SHARES:
        measured = spent[function] / sum(spent.values())
        assert in_functions[function] / total == pytest.approx(measured, abs=0.02), (function, weights, spent)
    assert re.match(rf"pybpftrace: {sum(weights.values())} samples, 0 lost, 1 threads, 5\.\d\d s \(duration\)$",
                    summary_line(run.stderr))


def test_lines_key_frames_by_the_line_running():
    target = Target("shares.py", "1", interpreter=HOST)
    run = trace_held(target, "profile", PID, "--lines", "--rate", "499")
    assert run.code == 0
    weights = folded_weights(run.stdout)
    spin_loop = f"spin ({target.path}:{line_of('shares.py', 'spin loops')})"
    func_a = f"func_a ({target.path}:{line_of('shares.py', 'func_a calls')})"
    leaves = Counter(stack.split(";")[-1] for stack in weights.elements())
    assert leaves.most_common(1)[0][0] == spin_loop
    assert any(f";{func_a};" in stack for stack in weights)


def test_a_command_is_sampled_from_its_start_and_its_exit_code_kept():
    result = run_tracer("profile", "--rate", "499", "--", *HOST.command("shares.py", "1"), input=b"go\n")
    assert result.returncode == 0
    weights = folded_weights(result.stdout.decode().split("\n", 1)[1])
    assert any(stack.endswith(f"spin ({HOST.script('shares.py')}:{line_of('shares.py', 'def spin')})")
               for stack in weights)


def deep_run(depth: int, interpreter=HOST):
    target = Target("deep.py", str(depth), interpreter=interpreter)
    try:
        tracer = Tracer("profile", target.pid, "--rate", "199", "--duration", "1")
        tracer.wait_attached()
        code, stdout, stderr = tracer.finish()
    finally:
        target.kill()
    assert code == 0, stderr
    return target, folded_weights(stdout), stderr


@pytest.mark.parametrize("interpreter", [HOST, *[i for i in WITH_FUNCTION_PROBES if i.version == (3, 15)]], ids=str)
def test_600_frames_are_walked_in_full(interpreter):
    interpreter.prepare()
    target, weights, _ = deep_run(600, interpreter)
    down = f"down ({target.path}:{line_of('deep.py', 'def down')})"
    spin = f"spin ({target.path}:{line_of('deep.py', 'def spin')})"
    stack = ";".join([f"<module> ({target.path}:1)"] + [down] * 601 + [spin])
    assert weights[stack] == sum(weights.values()) > 50


def test_deeper_stacks_are_marked_truncated():
    target, weights, stderr = deep_run(1500)
    down = f"down ({target.path}:{line_of('deep.py', 'def down')})"
    spin = f"spin ({target.path}:{line_of('deep.py', 'def spin')})"
    stack = ";".join(["[truncated]"] + [down] * 1023 + [spin])
    assert weights[stack] == sum(weights.values()) > 50
    assert f"{sum(weights.values())} samples deeper than the walker goes ([truncated])" in summary_line(stderr)


def test_freed_and_reused_code_objects_are_never_misnamed(any_interpreter):
    """Functions made by exec in turn, each run in its own thread and freed: a sample of
    uniq_N is always on the thread that ran uniq_N, though code objects took each other's
    addresses."""
    target = Target("reused.py", "400", interpreter=any_interpreter)
    run = trace_held(target, "profile", PID, "--per-thread", "--rate", "997")
    assert run.code == 0, run.stderr
    threads = json.loads(run.target_output)
    addresses = [address for _, address in threads.values()]
    assert len(addresses) - len(set(addresses)) >= 20, "too few code objects took a freed one's address"
    seen = 0
    for stack, weight in folded_weights(run.stdout).items():
        names = re.findall(r";uniq_(\d+) \(<string>:1\)", stack)
        if names:
            (index,) = names
            assert stack.startswith(f"thread {threads[index][0]};"), stack
            seen += weight
    assert seen > 500


@pytest.mark.parametrize("interpreter", WITH_FUNCTION_PROBES, ids=str)
def test_profile_agrees_with_the_exact_trace(interpreter):
    """Both at once on one process: each function's share of the time `profile --wall`
    weighed within 2 points of its share of the self time `stack --folded` measured (both wall
    clock: on a busy machine, time the target waits for a CPU counts for both)."""
    interpreter.prepare()
    target = Target("shares.py", "5", interpreter=interpreter)
    try:
        exact = Tracer("stack", target.pid, "--folded", "--filename", "shares.py")
        sampled = Tracer("profile", target.pid, "--wall")
        exact.wait_attached()
        sampled.wait_attached()
        target.go()
        target.finish()
        _, exact_out, _ = exact.finish()
        _, sampled_out, _ = sampled.finish()
    finally:
        target.kill()
    shares = []
    for output in (exact_out, sampled_out):
        per_function = Counter()
        for stack, weight in folded_weights(output).items():
            for function in SHARES:
                if f";{function} (" in stack:
                    per_function[function] += weight
        total = sum(per_function.values())
        shares.append({function: per_function[function] / total for function in SHARES})
    for function in SHARES:
        assert shares[1][function] == pytest.approx(shares[0][function], abs=0.02), shares


# bad input ------------------------------------------------------------------------------------


def test_no_such_process():
    result = run_tracer("profile", "999999999")
    assert (result.returncode, result.stderr) == (3, b"pybpftrace: no process with PID 999999999\n")


def test_not_a_python():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_tracer("profile", str(sleeper.pid))
    finally:
        sleeper.kill()
    assert result.returncode == 4
    assert result.stderr == f"pybpftrace: PID {sleeper.pid} is not a Python: it holds no CPython interpreter\n".encode()


def test_an_unsupported_version_is_refused():
    python36 = pyenv_interpreter((3, 6))
    if python36 is None:
        pytest.skip("no pyenv build of 3.6 on this machine")
    result = run_tracer("profile", "--", python36.python, "-c", "pass")
    assert result.returncode == 8
    assert re.fullmatch(
        rb"pybpftrace: CPython 3\.6\.\d+ at \S+libpython3\.6m\.so\.1\.0: pybpftrace reads the stacks of CPython "
        rb"3\.7 to 3\.15\n", result.stderr)


def test_bad_rate():
    result = run_tracer("profile", "1", "--rate", "0")
    assert result.returncode == 64 and b"--rate" in result.stderr


# every process of a binary, or every Python --------------------------------------------------


@pytest.mark.parametrize("selector", [["--binary", HOST.host_python], ["--all"]], ids=["binary", "all"])
def test_processes_started_later_and_their_forks_are_sampled(selector):
    """A process started after the tracer, and the child it forks, are sampled; with --all,
    so is a pyenv build's (its libpython mapped after exec) where the machine has one. Each
    runs once the tracer says it found it (--all: or that it found too many to tell)."""
    tracer = Tracer("profile", *selector, "--per-thread", "--rate", "499")
    targets = []
    try:  # a target that fails to start stops the tracer too: --all samples every Python here
        tracer.wait_attached()
        targets += [Target("shares.py", "1.5"), Target("forking.py")]
        pyenv = pyenv_interpreter((3, 12))
        if "--all" in selector and pyenv is not None:
            targets.append(Target("shares.py", "1.5", interpreter=pyenv))
        for target in targets:
            tracer.wait_said(f"pybpftrace: found PID {target.pid} ", "pybpftrace: found more Pythons")
            target.go()
        outputs = [target.finish()[0] for target in targets]
    finally:
        for target in targets:
            target.kill()
        tracer.signal()
    code, stdout, stderr = tracer.finish()
    assert code == 0, stderr
    weights = folded_weights(stdout)
    for target in targets[::2]:
        spin = f"spin ({target.path}:{line_of('shares.py', 'def spin')})"
        assert any(stack.endswith(spin) for stack in weights), target.path
    child = json.loads(outputs[1])["child"]
    work = f"work ({targets[1].path}:{line_of('forking.py', 'def work')})"
    assert any(stack.startswith(f"thread {child};") and stack.endswith(work) for stack in weights), (child, stdout)


def test_gil_keeps_only_the_samples_of_the_thread_holding_it(every_interpreter):
    """--gil (py-spy's): a thread hashing in C with the GIL released is on its CPU as much as
    one running Python, but only the latter's samples are kept; the summary says how many
    were left out."""
    target = Target("gil_holders.py", interpreter=every_interpreter)
    with target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("profile", str(target.pid), "--gil", "--duration", "2")
    assert result.returncode == 0, result.stderr
    weights = folded_weights(result.stdout.decode())
    in_function = Counter()
    for stack, weight in weights.items():
        functions = {frame.split(" (")[0] for frame in stack.split(";")}
        in_function["hasher" if "hasher" in functions else "spinner" if "spinner" in functions else "other"] += weight
    left_out = re.search(r"\[(\d+) samples of threads not holding the GIL left out \(--gil\)", result.stderr.decode())
    assert left_out and int(left_out[1]) > 0, result.stderr
    assert in_function["spinner"] > 0, weights
    # the hasher holds the GIL only between two digests: a few samples, where C hashing has hundreds
    assert in_function["hasher"] * 20 <= int(left_out[1]), (weights, left_out[1])
    total = re.search(r"pybpftrace: (\d+) samples", result.stderr.decode())
    assert int(total[1]) == sum(weights.values())  # those kept


def test_gil_goes_with_cpu_samples_only():
    result = run_tracer("profile", "1", "--gil", "--off-cpu")
    assert result.returncode == 64
    assert b"--gil goes with CPU samples only, not --off-cpu" in result.stderr


def _functions_by_process(document: dict) -> dict[int, Counter]:
    found: dict[int, Counter] = {}
    for stack in document["stacks"]:
        found.setdefault(stack["pid"], Counter())[stack["frames"][-1]["function"]] += stack["weight"]
    return found


def test_subprocesses_reads_children_forked_before_and_after(any_interpreter):
    """--subprocesses (py-spy's): a child forked before tracing and one forked after are read,
    each as its own process, beside their parent."""
    target = Target("busy_children.py", "1.5", interpreter=any_interpreter)
    run = trace_held(target, "profile", PID, "--subprocesses", "--json")
    assert run.code == 0, run.stderr
    early, late = map(int, run.target_output.split())
    found = _functions_by_process(json.loads(run.stdout))
    assert set(found) == {target.pid, early, late}, found
    for pid, function in ((target.pid, "spin"), (early, "spin"), (late, "spin")):
        assert found[pid][function] >= 0.5 * sum(found[pid].values()), (pid, found[pid])
    callers = {pid: {stack["frames"][-2]["function"] for stack in json.loads(run.stdout)["stacks"]
                     if stack["pid"] == pid and len(stack["frames"]) > 1 and stack["frames"][-1]["function"] == "spin"}
               for pid in found}
    assert callers == {target.pid: {"parent_spins"}, early: {"early_child"}, late: {"late_child"}}


def test_a_child_gone_before_it_was_looked_at_is_said():
    """A child Python that starts and exits while pybpftrace cannot look at it (here: while
    pybpftrace is stopped) is missing from the profile, and the summary says so, naming what
    it ran."""
    with Target("short_child.py") as target:
        tracer = Tracer("profile", target.pid, "--subprocesses")
        tracer.wait_attached()
        tracer.pause()
        target.go()
        spawned, program = target.process.stdout.readline().decode().split()
        assert spawned == "spawned"
        tracer.signal(signal.SIGCONT)
        tracer.signal(signal.SIGINT)
        code, _, stderr = tracer.finish()
    assert code == 0, stderr
    notes = re.search(r"\[(.*)\]", summary_line(stderr)).group(1).split("; ")
    # beside it, perhaps: a sample of the child between its fork and its exec, with no Python in it
    assert (f"1 process exited before pybpftrace could see what it ran ({program}): "
            "if it was a Python, its stacks are not read") in notes, stderr


@pytest.mark.parametrize("wrapper", ["env", "bash -c", "a script that execs"])
def test_a_launched_command_is_followed_to_its_python(wrapper, tmp_path):
    """A command that is no Python is followed to the Python it starts: the tracer says when
    it has found it, its functions are in the profile, and the start says the command runs no
    CPython."""
    command = HOST.command("busy_children.py", "0.5")
    if wrapper == "env":
        argv = ["env", *command]
    elif wrapper == "bash -c":  # the Python at the end of a pipe, its stdin the tracer's through cat
        argv = ["bash", "-c", f"cat | {shlex.join(command)}; true"]
    else:
        wrapper_script = tmp_path / "run.sh"
        wrapper_script.write_text(f"#!/bin/sh\nexec {shlex.join(command)}\n")
        wrapper_script.chmod(0o755)
        argv = [str(wrapper_script)]
    code, stdout, stderr = _held_until_found(Tracer("profile", "--json", "--", *argv, stdin=subprocess.PIPE))
    assert code == 0, stderr
    (document,) = [line for line in stdout.splitlines() if line.startswith("{")]  # beside the script's
    found = _functions_by_process(json.loads(document))
    assert len(found) == 3, found  # the parent and its two children
    assert all(counts["spin"] > 0 for counts in found.values()), found
    assert "is no Python: the Pythons it starts are read" in stderr
    (told,) = re.findall(r"pybpftrace: found PID (\d+) \(CPython 3\.(\d+)\.\d+ at (.*)\): its stacks are read", stderr)
    assert int(told[0]) in found and (3, int(told[1])) == HOST.version and told[2] == HOST.host_python, stderr  # (the path on this machine: the matrix's is in a chroot)


def _held_until_found(tracer: Tracer) -> tuple[int, str, str]:
    """A tracer whose launched command starts a Python that waits for a line on stdin: the line
    is given once the tracer says it found the Python, so the Python runs only while read."""
    try:
        tracer.wait_said("pybpftrace: found PID")
        tracer.process.stdin.write(b"go\n")
        tracer.process.stdin.close()
    except BaseException:
        tracer.signal(signal.SIGKILL)
        raise
    return tracer.finish()


def test_top_follows_a_launched_command_to_its_python():
    """top -- env python3 ...: each Python process the command starts has its rows, and the
    title says why calls are not counted there. (No table comes before the command ends: the
    one at its end is the whole run's.)"""
    command = ["env", *HOST.command("busy_children.py", "0.5")]
    code, stdout, stderr = _held_until_found(Tracer("top", "--interval", "600", "--", *command, stdin=subprocess.PIPE))
    assert code == 0, stderr
    # top's table, and the line of its children's PIDs the script prints when they are done
    # (before top's table, or after it: they share the output)
    lines = [line for line in stdout.splitlines() if not re.fullmatch(r"\d+ \d+", line)]
    assert "in the whole run of" in lines[0], lines
    assert lines[0].endswith("(calls not counted: not in the Pythons found under a command or with --subprocesses)")
    spinning = {line.split()[0] for line in lines[2:] if line.split()[-2:-1] == ["spin"]}
    assert len(spinning) == 3, lines  # the parent and its two children, by PID
