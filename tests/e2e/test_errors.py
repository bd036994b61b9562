"""Bad input: a clear one-line error and a distinct exit code each, never a traceback."""

import os
import pwd
import subprocess

import pytest

import expected
from support import (HOST, HOST_IS_OWN, NOT_OWN, Interpreter, calls, copied, pybpftrace_command, run_tracer,
                     summary_line)

NO_PROBES, NOT_FOUND, NOT_PYTHON, NOT_PERMITTED, COMMAND_NOT_FOUND, OUTPUT_FAILED, USAGE = 2, 3, 4, 5, 7, 9, 64


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
def python_without_probes(tmp_path_factory, require_tools) -> Interpreter:
    """Debian's CPython with its stapsdt notes removed: what a build without --with-dtrace
    looks like to a tracer."""
    require_tools("objcopy")
    strip = lambda source, destination: subprocess.run(
        ["objcopy", "--remove-section", ".note.stapsdt", source, destination], check=True)
    with copied(HOST, tmp_path_factory.mktemp("nodtrace"), f"python{HOST}", strip) as copy:
        yield copy


def test_no_such_pid():
    result = run_tracer("stack", "4000000")
    assert result.returncode == NOT_FOUND
    assert one_line_error(result) == "pybpftrace: no process with PID 4000000"


def test_not_a_python_process(sleeper):
    result = run_tracer("stack", sleeper)
    assert result.returncode == NOT_PYTHON
    assert one_line_error(result) == f"pybpftrace: PID {sleeper} is not a Python: it holds no CPython interpreter"


def test_python_without_probes_says_which_and_why(python_without_probes):
    process = subprocess.Popen([*python_without_probes.argv(), "-c", "import time; time.sleep(60)"])
    try:
        result = run_tracer("stack", process.pid)
        usdt = run_tracer("stack", process.pid, "--route", "usdt")
    finally:
        process.kill()
        process.wait()
    assert result.returncode == usdt.returncode == NO_PROBES
    missing = (f"pybpftrace: CPython 3.11.2 at {python_without_probes.host_python} has no USDT probes: it was built "
               "without --with-dtrace")
    assert one_line_error(result) == (
        f"{missing}; to follow its calls pybpftrace must set the interpreter's eval_frame hook (one pointer in each "
        "interpreter, set back when tracing ends, however it ends), which --eval-hook allows; pybpftrace profile "
        "samples where the time goes and writes nothing"
    )
    assert one_line_error(usdt) == (
        f"{missing}; without --route usdt, pybpftrace follows calls through its evaluator (the eval-frame route)"
    )


def test_command_without_probes_is_traced_by_its_evaluator(python_without_probes):
    """A launched command's calls go through its evaluator from its first: the eval-frame
    route, with the hook set then; --route usdt refuses before anything runs."""
    result = run_tracer("stack", "--filename", "calls.py", "--", *python_without_probes.command("calls.py"),
                        input=b"go\n")
    assert result.returncode == 0, result.stderr
    path = python_without_probes.script("calls.py")
    assert calls(result.stdout.decode().removeprefix("14\n")) == [
        f"=> <module> ({path}:1)", *("  " + line for line in expected.calls_body(path)),
        expected.module_ends(path, "calls.py")]


def test_command_without_probes_refused_by_the_usdt_route(python_without_probes, target_tmp):
    marker = target_tmp / "ran"
    result = run_tracer("stack", "--route", "usdt", "--", *python_without_probes.argv(), "-c",
                        f"open('{HOST.inside(marker)}', 'w')")
    assert result.returncode == NO_PROBES
    assert "has no USDT probes: it was built without --with-dtrace" in one_line_error(result)
    assert not marker.exists()


def test_command_not_found():
    result = run_tracer("stack", "--", "no-such-command-xyz")
    assert result.returncode == COMMAND_NOT_FOUND
    assert one_line_error(result) == "pybpftrace: command not found: no-such-command-xyz"


def test_command_that_is_not_python():
    result = run_tracer("stack", "--", "true")
    assert result.returncode == NOT_PYTHON
    assert one_line_error(result).endswith("is not a Python: it holds no CPython interpreter")


@pytest.mark.skipif(not HOST_IS_OWN, reason=f"a #! line naming it on PATH: {NOT_OWN}")
def test_shebang_script_resolves_to_its_interpreter(tmp_path):
    tool = tmp_path / "tool"
    tool.write_text(f"#!/usr/bin/env {os.path.basename(HOST.python)}\ndef hello():\n    return 1\nhello()\n")
    tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{os.path.dirname(HOST.python)}:{os.environ['PATH']}")
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


def as_nobody(*args):
    """pybpftrace run as the user nobody. It keeps CAP_DAC_READ_SEARCH, and only that, so that
    it reads the checkout and its venv wherever they are (under a 0700 home, Debian 13's
    default): reading another user's process is a ptrace check, which that does not pass."""
    nobody = pwd.getpwnam("nobody")
    return subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
         "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search", *pybpftrace_command(*args)],
        capture_output=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/"},
    )


def test_not_root():
    python = subprocess.run(pybpftrace_command()[:1] + ["-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert python.returncode == 0
    result = as_nobody("stack", os.getpid())
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
    result = as_nobody("list", HOST.host_python)
    assert result.returncode == 0, result.stderr
    assert b"python:function__entry" in result.stdout


def test_probeless_binary_listing(python_without_probes):
    result = run_tracer("list", python_without_probes.host_python)
    assert result.returncode == 0
    assert result.stdout.decode() == (
        f"{python_without_probes.host_python}: CPython 3.11.2, x86-64 executable, 0 probes\n"
        "  no USDT probes: this CPython was built without --with-dtrace\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "inf"], "Invalid value for '--duration': inf is not a finite number"),
        (["--duration", "nan"], "Invalid value for '--duration': nan is not a finite number"),
        (["--buffer-size", "inf"], "Invalid value for '--buffer-size': inf is not a finite number"),
        (["--buffer-size", "nan"], "Invalid value for '--buffer-size': nan is not a finite number"),
        (["--buffer-size", "100000"], "Invalid value for '--buffer-size': 100000.0 is not in the range 0.1<=x<=1024."),
        (["--tid", str(2**32 + 1)], f"Invalid value for '--tid': {2**32 + 1} is not in the range 1<=x<=4194304."),
        (["--function", ""], "--function takes a name of 1 to 255 bytes, without NUL"),
        (["--function", "x" * 300], "--function takes a name of 1 to 255 bytes, without NUL"),
    ],
)
def test_values_refused_before_anything_runs(args, message, target_tmp):
    marker = target_tmp / "ran"
    result = run_tracer("stack", *args, "--", *HOST.argv(), "-c", f"open('{HOST.inside(marker)}', 'w')")
    assert result.returncode == USAGE
    assert message in one_line_error(result)
    assert not marker.exists()


@pytest.mark.parametrize("command, where, reason", [
    # stack's outputs (any format, several files): checked before tracing
    ("stack", "directory", "cannot write {path}: it is a directory"),
    ("stack", "missing", "cannot write {path}: no directory {path.parent}"),
    # a command with one text output: opened before tracing
    ("gc", "directory", "Invalid value for '-o' / '--output': cannot write {path}: it is a directory"),
    ("gc", "missing", "Invalid value for '-o' / '--output': cannot write {path}: no directory {path.parent}"),
])
def test_output_that_cannot_be_opened_is_refused_before_attaching(command, where, reason, tmp_path, target_tmp):
    path = tmp_path if where == "directory" else tmp_path / "missing" / "trace.txt"
    marker = target_tmp / "ran"
    result = run_tracer(command, "-o", path, "--", *HOST.argv(), "-c", f"open('{HOST.inside(marker)}', 'w')")
    assert result.returncode == USAGE
    assert one_line_error(result) == f"pybpftrace: {reason.format(path=path)} (see `pybpftrace {command} --help`)"
    assert not marker.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system, to fill."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mount], check=True)
    yield mount
    subprocess.run(["umount", mount], check=True)


def test_a_full_disk_ends_the_trace_with_what_was_written(small_disk):
    output = small_disk / "trace.txt"
    result = run_tracer("stack", "-o", output, "--", *HOST.command("recursion.py"), "3000", input=b"go\n")
    assert result.returncode == OUTPUT_FAILED
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"pybpftrace: cannot write to {output}: No space left on device"
    assert summary_line(stderr).endswith("(output failed)")
    written = output.read_bytes()
    assert written.startswith(b"     TIME(s)      TID  CALL\n")
    # all that fit is kept: the whole disk, less what the events waiting to be rendered held on it then
    assert 0 < len(written) <= 256 * 1024
    assert result.stdout == b"3000\n"  # the traced command ran to its end, untouched


def test_a_full_temporary_directory_ends_the_trace_naming_it(small_disk):
    """Written to a pipe, the events wait in TMPDIR: full, the trace ends as an output's would."""
    # the disk full but for one page: enough for Python to take TMPDIR (it writes a few bytes to
    # see that it can, else takes /tmp), and for the spool's first records, not for a batch of them
    (small_disk / "page").write_bytes(bytes(4096))
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, bytes(4096)):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    (small_disk / "page").unlink()
    result = run_tracer("stack", "--", *HOST.command("recursion.py"), "3000", input=b"go\n",
                        env={**os.environ, "TMPDIR": str(small_disk)})
    assert result.returncode == OUTPUT_FAILED
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (f"pybpftrace: cannot write to {small_disk} (where events wait to be written; "
                                       "TMPDIR chooses it): No space left on device")
    assert summary_line(stderr).endswith("(output failed)")
    lines = result.stdout.decode().splitlines()
    lines.remove("3000")  # the traced command ran to its end, untouched
    assert lines[0] == "     TIME(s)      TID  CALL"
    assert len(lines) - 1 < 2 * 3000  # the calls rendered before a batch found no room: not all of them


def test_output_to_a_closed_pipe_ends_with_the_summary():
    """`stack ... | head -1`: the reader had what it wanted; the trace ends cleanly."""
    calls = "def f():\n    pass\nfor i in range(20000):\n    f()\n"  # prints nothing to the closed pipe itself
    tracer = subprocess.Popen(pybpftrace_command("stack", "--", *HOST.argv(), "-c", calls),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = tracer.stdout.readline()
    tracer.stdout.close()
    stderr = tracer.stderr.read().decode()
    assert tracer.wait(timeout=60) == 0
    assert first == b"     TIME(s)      TID  CALL\n"
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert summary_line(stderr).endswith("(output closed)")


def test_list_of_a_directory_or_a_damaged_elf(tmp_path):
    directory = run_tracer("list", tmp_path)
    assert directory.returncode == NOT_PYTHON
    assert one_line_error(directory) == f"pybpftrace: {tmp_path} is a directory, not an ELF file"
    truncated = tmp_path / "truncated"
    truncated.write_bytes(open(HOST.host_python, "rb").read(3000))
    result = run_tracer("list", truncated)
    assert result.returncode == NOT_PYTHON
    assert one_line_error(result).startswith(f"pybpftrace: {truncated}: not a readable ELF file: truncated or corrupt (")
    binary = run_tracer("stack", "--binary", truncated)
    assert binary.returncode == NOT_PYTHON
    assert one_line_error(binary).startswith(f"pybpftrace: {truncated}: not a readable ELF file: truncated or corrupt (")


@pytest.fixture
def zombie():
    process = subprocess.Popen(["true"])
    while open(f"/proc/{process.pid}/stat").read().split(") ")[1][0] != "Z":
        os.sched_yield()
    yield process.pid
    process.wait()


@pytest.mark.parametrize("command", ["stack", "list"])
def test_a_zombie_has_exited(zombie, command):
    result = run_tracer(command, zombie)
    assert result.returncode == NOT_FOUND
    assert one_line_error(result) == f"pybpftrace: PID {zombie} (true) has exited (its parent has not reaped it yet)"


def test_a_kernel_thread():
    listed = run_tracer("list", "2")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, b"PID 2 (kthreadd, a kernel thread): no USDT probes\n", b"")
    traced = run_tracer("stack", "2")
    assert traced.returncode == NOT_PYTHON
    assert one_line_error(traced) == "pybpftrace: PID 2 (kthreadd) is a kernel thread, not a Python"


def test_list_of_a_process_not_ours_to_read(sleeper):
    result = as_nobody("list", sleeper)
    assert result.returncode == NOT_PERMITTED
    assert one_line_error(result) == (
        f"pybpftrace: cannot read the memory map of PID {sleeper}: permission denied (run it as root)")


@pytest.fixture(scope="module")
def python_with_zeroed_notes(tmp_path_factory):
    """Debian's CPython with its .note.stapsdt section overwritten with zeros."""
    from elftools.elf.elffile import ELFFile

    path = tmp_path_factory.mktemp("zeroed") / "python3.11"
    data = bytearray(open(HOST.host_python, "rb").read())
    with open(HOST.host_python, "rb") as stream:
        section = ELFFile(stream).get_section_by_name(".note.stapsdt")
        start, size = section["sh_offset"], section["sh_size"]
    data[start : start + size] = bytes(size)
    path.write_bytes(data)
    path.chmod(0o755)
    return str(path)


def test_zeroed_notes_are_not_a_build_without_dtrace(python_with_zeroed_notes):
    listed = run_tracer("list", python_with_zeroed_notes)
    assert listed.returncode == 0
    assert listed.stdout.decode() == (
        f"{python_with_zeroed_notes}: CPython 3.11.2, x86-64 executable, 0 probes\n"
        "  no readable USDT probes: the .note.stapsdt section is there but zeroed or corrupt\n"
    )
    traced = run_tracer("stack", "--route", "usdt", "--", python_with_zeroed_notes, "-c", "pass")
    assert traced.returncode == NO_PROBES
    assert one_line_error(traced) == (
        f"pybpftrace: CPython 3.11.2 at {python_with_zeroed_notes} has no readable USDT probes: its "
        ".note.stapsdt section is there but zeroed or corrupt; without --route usdt, pybpftrace follows calls "
        "through its evaluator (the eval-frame route)")


def test_shebang_script_refused_names_what_it_resolved_to(tmp_path):
    """`#!/usr/bin/env python3.11` finding, on PATH, a python3.11 that is not a Python."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3.11").symlink_to("/bin/true")
    tool = tmp_path / "tool"
    tool.write_text("#!/usr/bin/env python3.11\nprint('hello')\n")
    tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    result = subprocess.run(pybpftrace_command("stack", "--", str(tool)), capture_output=True, env=env, timeout=60)
    assert result.returncode == NOT_PYTHON
    true = os.path.realpath("/bin/true")
    assert one_line_error(result) == (
        f"pybpftrace: {tool} (which runs {true}) is not a Python: it holds no CPython interpreter")


def test_launched_command_is_traced_from_its_own_first_call():
    """Nothing of the launcher's own (between fork and exec) shows."""
    result = run_tracer("stack", "--json", "--", *HOST.argv(), "-c", "pass")
    assert result.returncode == 0
    first = result.stdout.decode().splitlines()[0]
    assert '"file": "<frozen importlib._bootstrap>"' in first or '"file": "<frozen' in first, first
