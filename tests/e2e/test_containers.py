"""A Python in its own PID namespace (`unshare --pid`, as a container runs it), traced from the
host by its host PID: CPython keeps its threads' TIDs as its namespace numbers them, the tracer
and the kernel know them by the host's. Every command reads its stacks and shows host TIDs
(dump's JSON gives the namespace's beside them)."""

import json
import os
import subprocess

import pytest

from support import ALL_INTERPRETERS, Interpreter, folded_lines, line_of, run_tracer

# 3.9 (the TID read from glibc's struct pthread), 3.11 and 3.15 (CPython's own native_thread_id)
VERSIONS = [i for i in ALL_INTERPRETERS if i.version in ((3, 9), (3, 11), (3, 15))]


class Contained:
    """scripts/contained.py under `unshare --pid --fork --mount-proc`: its host PID, and the
    host TIDs of its threads by the TIDs its namespace gives them."""

    def __init__(self, interpreter: Interpreter):
        interpreter.prepare()
        self.process = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc",
                                         *interpreter.command("contained.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.process.stdout.readline().split()
        assert line[:2] == [b"ready", b"1"], line  # PID 1 in its namespace
        (self.pid,) = [int(child) for child in open(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
                       .read().split()]
        self.host_tids = {}
        for task in os.listdir(f"/proc/{self.pid}/task"):
            status = open(f"/proc/{self.pid}/task/{task}/status").read()
            (nspid,) = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
            self.host_tids[int(nspid[-1])] = int(nspid[0])

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def thread_of(stack: str) -> int:
    """The TID a --per-thread stack is rooted at: `thread TID[ (name)];...`."""
    return int(stack.split(";")[0].split()[1])


@pytest.fixture(params=VERSIONS, ids=str)
def contained(request):
    target = Contained(request.param)
    yield request.param, target
    target.close()


def test_dump_shows_host_tids_and_the_namespaces(contained):
    interpreter, target = contained
    result = run_tracer("dump", "--json", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    threads = json.loads(result.stdout)["threads"]
    by_name = {thread["name"]: thread for thread in threads}
    assert sorted(by_name) == ["MainThread", "contained-worker", "stdin-watch"]
    for thread in threads:
        assert thread["tid"] == target.host_tids[thread["ns_tid"]] != thread["ns_tid"]
    assert by_name["MainThread"]["ns_tid"] == 1
    assert [f["function"] for f in by_name["contained-worker"]["frames"]][0] == "wait_here"
    text = run_tracer("dump", target.pid).stdout.decode()
    assert f"Thread {target.pid} (" in text and '"MainThread" [TID 1 in its PID namespace]: ' in text


def test_profile_reads_every_thread(contained):
    interpreter, target = contained
    result = run_tracer("profile", "--per-thread", "--duration", "1", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    stacks = folded_lines("\n".join(line for line in result.stdout.decode().splitlines()
                                    if not line.startswith("pybpftrace:")))
    assert not any("[no Python thread state]" in stack for stack in stacks)
    spinning = [stack for stack in stacks if stack.endswith(f"spin ({interpreter.script('contained.py')}:"
                                                             f"{line_of('contained.py', 'def spin')})")]
    assert spinning and all(thread_of(stack) == target.pid for stack in spinning)


def test_off_cpu_waits_are_the_threads_own(contained):
    interpreter, target = contained
    result = run_tracer("profile", "--off-cpu", "--per-thread", "--duration", "1", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    worker = target.host_tids[max(target.host_tids)] if len(target.host_tids) == 2 else None
    waits = [line for line in result.stdout.decode().splitlines() if "wait_here (" in line]
    assert waits and all(thread_of(line) in target.host_tids.values() and "[no Python thread state]" not in line
                         for line in waits)
    assert worker is None or any(thread_of(line) == worker for line in waits)


@pytest.mark.parametrize("command", [["stack", "--folded"], ["top", "--once", "--interval", "1"]])
def test_exact_commands_see_its_calls_from_their_root(contained, command):
    interpreter, target = contained
    result = run_tracer(*command, "--duration", "1", target.pid) if command[0] == "stack" else \
        run_tracer(*command, target.pid)
    assert result.returncode == 0, result.stderr.decode()
    script = interpreter.script("contained.py")
    spin = f"spin ({script}:{line_of('contained.py', 'def spin')})"
    if command[0] == "stack":
        stacks = folded_lines("\n".join(line for line in result.stdout.decode().splitlines()
                                        if not line.startswith("pybpftrace:")))
        main = f"<module> ({script}:1);main ({script}:{line_of('contained.py', 'def main')});{spin}"
        assert stacks.get(main, 0) > 0, sorted(stacks)
    else:
        assert any(line.endswith(spin) for line in result.stdout.decode().splitlines())


def test_stack_json_gives_both_tids(contained):
    interpreter, target = contained
    result = run_tracer("stack", "--json", "--duration", "0.5", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    assert events and {(event["tid"], event["ns_tid"]) for event in events} <= {
        (host, inside) for inside, host in target.host_tids.items()}
    assert (target.pid, 1) in {(event["tid"], event["ns_tid"]) for event in events}
