"""Bad input: a clear one-line error and a distinct exit code each, never a traceback."""

import os
import pwd
import subprocess

import pytest

from support import PYTHON311, pybpftrace_command, run_tracer

NO_PROBES, NOT_FOUND, NOT_PYTHON, NOT_PERMITTED, COMMAND_NOT_FOUND, USAGE = 2, 3, 4, 5, 7, 64


def one_line_error(result) -> str:
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert result.stdout == b""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pybpftrace: ")
    return lines[0]


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def python_without_probes(tmp_path_factory, require_tools):
    """Debian's CPython with its stapsdt notes removed: what a build without --with-dtrace
    looks like to a tracer."""
    require_tools("objcopy")
    path = tmp_path_factory.mktemp("nodtrace") / "python3.11"
    subprocess.run(["objcopy", "--remove-section", ".note.stapsdt", PYTHON311, path], check=True)
    return str(path)


def test_no_such_pid():
    result = run_tracer("stack", "4000000")
    assert result.returncode == NOT_FOUND
    assert one_line_error(result) == "pybpftrace: no process with PID 4000000"


def test_not_a_python_process(sleeper):
    result = run_tracer("stack", sleeper)
    assert result.returncode == NOT_PYTHON
    assert one_line_error(result) == f"pybpftrace: PID {sleeper} is not a Python: it holds no CPython interpreter"


def test_python_without_probes_says_which_and_why(python_without_probes):
    process = subprocess.Popen([python_without_probes, "-c", "import time; time.sleep(60)"])
    try:
        result = run_tracer("stack", process.pid)
    finally:
        process.kill()
        process.wait()
    assert result.returncode == NO_PROBES
    assert one_line_error(result) == (
        f"pybpftrace: CPython 3.11.2 at {python_without_probes} has no USDT probes: "
        "it was built without --with-dtrace"
    )


def test_command_without_probes_is_refused_before_it_runs(python_without_probes, tmp_path):
    marker = tmp_path / "ran"
    result = run_tracer("stack", "--", python_without_probes, "-c", f"open('{marker}', 'w')")
    assert result.returncode == NO_PROBES
    assert "has no USDT probes" in one_line_error(result)
    assert not marker.exists()


def test_command_not_found():
    result = run_tracer("stack", "--", "no-such-command-xyz")
    assert result.returncode == COMMAND_NOT_FOUND
    assert one_line_error(result) == "pybpftrace: command not found: no-such-command-xyz"


def test_command_that_is_not_python():
    result = run_tracer("stack", "--", "true")
    assert result.returncode == NOT_PYTHON
    assert one_line_error(result).endswith("is not a Python: it holds no CPython interpreter")


def test_shebang_script_resolves_to_its_interpreter(tmp_path):
    tool = tmp_path / "tool"
    tool.write_text(f"#!/usr/bin/env {os.path.basename(PYTHON311)}\ndef hello():\n    return 1\nhello()\n")
    tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{os.path.dirname(PYTHON311)}:{os.environ['PATH']}")
    result = subprocess.run(
        pybpftrace_command("stack", "--filename", str(tool), "--", str(tool)), capture_output=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"=> hello ({tool}:2)" in result.stdout.decode()


@pytest.mark.parametrize(
    "args, message",
    [
        (["stack", "--bogus"], "No such option '--bogus'"),
        (["stack"], "give a PID (or -p PID), a command after --, --binary PATH or --all"),
        (["stack", "12", "--", "python3"], "give PIDs, a command after --, or --binary/--all: one of them"),
        (["stack", "12", "--all"], "give PIDs, a command after --, or --binary/--all: one of them"),
        (["stack", "--"], "no command after --"),
        (["stack", "abc"], "'abc' is not a valid integer"),
        (["stack", "1", "--max-depth", "0"], "0 is not in the range x>=1"),
        (["stack", "1", "--folded", "--json"], "--folded and --json do not go together"),
        (["stack", "1", "-o", "a.svg", "-o", "a.trace.json"],
         "chrome come from the streamed trace and svg from the folded one: trace once for each"),
        (["stack", "1", "--format", "svg", "-o", "a", "-o", "b"], "--format goes with one output at most"),
        (["stack", "1", "-o", "/nonexistent/a.svg"], "cannot write /nonexistent/a.svg: no directory /nonexistent"),
        (["stack", "1", "-o", "/"], "cannot write /: it is a directory"),
        (["calls", "1", "-o", "a.svg"], "a.svg: this command writes text, json, pprof, not svg"),
        (["gc", "1", "--format", "svg"], "No such option '--format'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_usage(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_tracer(*args)
    assert result.returncode == USAGE
    assert message in one_line_error(result)
    assert list(tmp_path.iterdir()) == []  # no output file left behind


def test_function_name_too_long(sleeper):
    result = run_tracer("stack", sleeper, "--function", "x" * 300)
    assert result.returncode == 1
    assert one_line_error(result) == "pybpftrace: --function takes a name of 1 to 255 bytes"


def test_not_root():
    nobody = pwd.getpwnam("nobody")
    python = subprocess.run(pybpftrace_command()[:1] + ["-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert python.returncode == 0
    result = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
         *pybpftrace_command("stack", os.getpid())],
        capture_output=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/"},
    )
    assert result.returncode == NOT_PERMITTED
    assert one_line_error(result) == (
        "pybpftrace: pybpftrace stack needs root (CAP_BPF and CAP_PERFMON): run it with sudo"
    )


def test_list_errors(tmp_path):
    missing = run_tracer("list", tmp_path / "missing")
    assert missing.returncode == NOT_FOUND
    assert one_line_error(missing) == f"pybpftrace: no such file: {tmp_path / 'missing'}"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    not_elf = run_tracer("list", text)
    assert not_elf.returncode == NOT_PYTHON
    assert one_line_error(not_elf) == f"pybpftrace: {text} is not an ELF file"
    assert run_tracer("list", "4000000").returncode == NOT_FOUND


def test_list_needs_no_root_for_a_file():
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
         *pybpftrace_command("list", PYTHON311)],
        capture_output=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/"},
    )
    assert result.returncode == 0, result.stderr
    assert b"python:function__entry" in result.stdout


def test_probeless_binary_listing(python_without_probes):
    result = run_tracer("list", python_without_probes)
    assert result.returncode == 0
    assert result.stdout.decode() == (
        f"{python_without_probes}: CPython 3.11.2, x86-64 executable, 0 probes\n"
        "  no USDT probes: this CPython was built without --with-dtrace\n"
    )
