"""Tracing leaves nothing behind and changes nothing the target does or prints."""

import select
import signal
import subprocess
import time

import pytest

from support import (
    HOST,
    TIMEOUT,
    Target,
    Tracer,
    assert_nothing_left,
    probe_bytes,
    run_tracer,
    semaphores,
    summary_line,
)


def assert_tracing(target, interpreter=HOST):
    """While tracing: entry and return semaphores up, and on 3.11 the line semaphore too
    (gh-98894); int3 at the function probes; nothing else touched."""
    raised = {"function__entry", "function__return"} | ({"line"} if interpreter.version == (3, 11) else set())
    values = semaphores(target.pid, interpreter.host_python)
    assert {name for name, value in values.items() if value} == raised
    assert all(values[name] == 1 for name in raised)
    for name, (in_memory, in_file) in probe_bytes(target.pid, interpreter.host_python).items():
        hooked = name.startswith(("function__entry", "function__return"))
        assert in_memory == (0xCC if hooked else in_file), name


def wait_until_it_runs(target):
    """Until the target (forever.py) has made 100,000 calls from now: on a loaded machine it
    may otherwise not run at all between the attach and the signal. Its CPU time did not tell:
    in a TCG guest, 20 ms of it once came with not one sample at 999 a second (a virtual CPU
    stopped by its host may go on charging the thread it stopped in: our reading, unproven)."""
    target.process.stdin.write(b"beat?\n")
    target.process.stdin.flush()
    assert select.select([target.process.stdout], [], [], TIMEOUT)[0], "the target never answered"
    assert target.process.stdout.readline() == b"beat\n"


@pytest.fixture
def target():
    target = Target("forever.py")
    yield target
    target.kill()


@pytest.fixture
def any_target(interpreter):
    target = Target("forever.py", interpreter=interpreter)
    yield target, interpreter
    target.kill()


def finish_untouched(target):
    target.go()
    out, err = target.finish()
    assert (out, err, target.process.returncode) == (b"ticks done\n", b"", 0)


def test_nothing_left_after_a_normal_end(any_target):
    target, interpreter = any_target
    assert not any(semaphores(target.pid, interpreter.host_python).values())
    tracer = Tracer("stack", target.pid, "--duration", "1", "-o", "/dev/null")
    tracer.wait_attached()
    assert_tracing(target, interpreter)
    code, _, stderr = tracer.finish()
    assert code == 0 and summary_line(stderr).endswith("(duration)")
    assert_nothing_left(target.pid, interpreter.host_python)
    finish_untouched(target)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_the_trace_cleanly_with_folded_output(target, number):
    tracer = Tracer("stack", target.pid, "--folded")
    tracer.wait_attached()
    assert_tracing(target)
    wait_until_it_runs(target)
    tracer.signal(number)
    code, stdout, stderr = tracer.finish()
    assert code == 0
    assert summary_line(stderr).endswith(f"({signal.Signals(number).name})")
    assert f"tick ({HOST.script('forever.py')}:" in stdout
    assert_nothing_left(target.pid)
    finish_untouched(target)


def test_signals_while_the_output_is_written_do_not_lose_it(target, tmp_path):
    """Ctrl-C stops a profile, which writes everything at the end; more signals while it
    writes (an impatient Ctrl-C, a SIGTERM from a supervisor) wait for the output."""
    svg = tmp_path / "profile.svg"
    tracer = Tracer("profile", target.pid, "--wall", "-o", svg)
    tracer.wait_attached()
    wait_until_it_runs(target)
    while not (svg.exists() and svg.read_text().rstrip().endswith("</svg>")):  # until it is written
        assert tracer.process.poll() is None, tracer.process.stderr.read().decode()
        tracer.signal(signal.SIGINT)
        time.sleep(0.02)
    code, _, stderr = tracer.finish()
    assert code == 0, stderr
    assert summary_line(stderr).endswith("(SIGINT)")
    # main, not tick: a sample may miss tick (30 of them, none in it, once in CI), never main
    assert f"main ({HOST.script('forever.py')}:" in svg.read_text(), stderr
    finish_untouched(target)


@pytest.mark.parametrize("command", [("stack",), ("stack", "--folded"), ("calls",), ("audit",)], ids=" ".join)
def test_sigterm_right_after_the_announcement_ends_cleanly(target, command):
    """Once "tracing ..." is printed, a signal ends the trace: no window where it kills."""
    tracer = Tracer(*command, target.pid, "-o", "/dev/null")
    tracer.wait_attached()
    tracer.signal(signal.SIGTERM)
    code, _, stderr = tracer.finish()
    assert code == 0 and summary_line(stderr).endswith("(SIGTERM)")
    assert_nothing_left(target.pid)
    finish_untouched(target)


def test_sigkill_of_the_tracer_leaves_nothing_raised(any_target):
    target, interpreter = any_target
    tracer = Tracer("stack", target.pid, "-o", "/dev/null")
    tracer.wait_attached()
    assert_tracing(target, interpreter)
    tracer.signal(signal.SIGKILL)
    tracer.finish()
    assert_nothing_left(target.pid, interpreter.host_python)
    finish_untouched(target)


def untraced(name, interpreter=HOST):
    result = subprocess.run(interpreter.command(name), input=b"go\n", capture_output=True, timeout=60)
    return result.stdout, result.stderr, result.returncode


@pytest.mark.parametrize("name", ["features.py", "threads.py", "calls.py"])
def test_output_is_byte_identical_when_attached(name, interpreter):
    expected = untraced(name, interpreter)
    with Target(name, interpreter=interpreter) as target:
        tracer = Tracer("stack", target.pid, "-o", "/dev/null")
        tracer.wait_attached()
        target.go()
        out, err = target.finish()
        assert tracer.finish()[0] == 0
    assert (out, err, target.process.returncode) == expected


@pytest.mark.parametrize("name", ["features.py", "calls.py"])
def test_output_is_byte_identical_when_launched(name, tmp_path):
    expected = untraced(name)
    result = run_tracer("stack", "-o", tmp_path / "trace", "--", *HOST.command(name), input=b"go\n")
    assert (result.stdout, result.returncode) == (expected[0], expected[2])
    assert result.stderr.decode().splitlines()[0].startswith("pybpftrace: tracing PID ")


def test_launched_command_exit_status_is_passed_through(tmp_path):
    result = run_tracer("stack", "-o", tmp_path / "trace", "--", *HOST.argv(), "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3
    assert summary_line(result.stderr.decode()).endswith("(target exited)")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # bcc's, in this process: the whole program text
def test_a_failure_after_attaching_releases_probes_and_signals(target):
    """In-process: a command whose output cannot start after the probes went in (the
    consumer fails) leaves the target untouched and the tracer's signals as they were."""
    from pybpftrace.session import TraceOptions, run_tool
    from pybpftrace.target import TargetOptions
    from pybpftrace.tools.stack import CALL_EVENT, SPEC

    def failing_consumer(session):
        assert_tracing(target)
        raise OSError("the output cannot be opened")

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    options = TraceOptions(target=TargetOptions(pids=[target.pid]), quiet=True)
    with pytest.raises(OSError, match="the output cannot be opened") as failure:
        run_tool("stack", SPEC, CALL_EVENT, options, failing_consumer)
    # the traceback (and with it the session) still lives: what it held was let go anyway
    assert failure.traceback
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert_nothing_left(target.pid)
    finish_untouched(target)
