"""A traced process is untrusted: its names reach no terminal raw, cannot forge a line of
folded stacks or break an SVG, and an -o path it (or another user) prepared is not written
through; the ELF files it maps and the memory it corrupts are read within bounds, and what
they lack is said. The target (scripts/hostile.py) names its functions, file and thread with
payloads: terminal escapes that would retitle the terminal, write the clipboard and clear the
screen, C1 and bidirectional controls, and a line break."""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree

import pytest

from pybpftrace.interpreter import read_interpreter
from pybpftrace.target import inspect_binary
from support import (HOST, TIMEOUT, WITH_FUNCTION_PROBES, Interpreter, Target, calls, folded_lines, line_of,
                     probes_of, pybpftrace_command, run_tracer)
from test_folded import flamegraph_pl

USAGE = 64
# Escaped as shown() escapes them (repr's escapes), in every text output.
FUNCTION = "evil\\x1b]0;PWNED\\x07\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J\\x9b2J\\u202e\\x00"
FORGED = "forged 1\\nmain;evil 99999"
FILE = "/tmp/\\x1b]0;PWNED\\x07.py"
# Anything a terminal acts on, or that starts a line of its own inside one.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
VERSIONS = [i for i in WITH_FUNCTION_PROBES if i.version in ((3, 11), (3, 15))]


def traced(interpreter: Interpreter, *options: str) -> subprocess.CompletedProcess:
    interpreter.prepare()
    result = run_tracer(*options, "--", *interpreter.command("hostile.py"), input=b"go\n")
    assert result.returncode == 0, result.stderr.decode()
    assert not RAW.search(result.stdout.decode()) and not RAW.search(result.stderr.decode())
    return result


@pytest.mark.parametrize("interpreter", VERSIONS, ids=str)
def test_stack_shows_names_escaped(interpreter):
    result = traced(interpreter, "stack", "--filename", "/tmp/")
    outer, inner = line_of("hostile.py", "def outer"), line_of("hostile.py", "def inner")
    lines = [line.split(" [")[0] for line in calls(result.stdout.decode())]
    call = lambda function, line: f"{function} ({FILE}:{line})"  # noqa: E731
    assert lines[0] == f"  => {call(FUNCTION, outer)}"  # under <module>, which --filename hides
    assert lines[1:7:2] == [f"      => {call(FORGED, inner)}"] * 3
    assert lines[-1].startswith(f"  <= {FUNCTION} ({FILE}:")


@pytest.mark.parametrize("interpreter", VERSIONS, ids=str)
def test_folded_stacks_cannot_be_forged(interpreter, tmp_path):
    folded = tmp_path / "out.folded"
    traced(interpreter, "stack", "--folded", "--weight", "calls", "-o", folded)
    text = folded.read_text()
    escaped = lambda label: label.replace(";", "\\x3b")  # noqa: E731
    outer, inner = line_of("hostile.py", "def outer"), line_of("hostile.py", "def inner")
    stacks = folded_lines(text)
    assert all(re.fullmatch(r"[^;\n]+(;[^;\n]+)* \d+", line) for line in text.splitlines())
    forged = [stack for stack in stacks if stack.endswith(f"{escaped(FORGED)} ({escaped(FILE)}:{inner})")]
    assert [stacks[stack] for stack in forged] == [3]
    assert forged[0].split(";")[1] == f"{escaped(FUNCTION)} ({escaped(FILE)}:{outer})"
    assert not any(frame.startswith("evil 99999") for stack in stacks for frame in stack.split(";"))
    # flamegraph.pl draws the same frames, and an SVG a browser parses
    drawn = subprocess.run(["perl", flamegraph_pl(), folded], capture_output=True, check=True).stdout
    titles = [element.text for element in ElementTree.fromstring(drawn).iter("{http://www.w3.org/2000/svg}title")]
    assert f"{escaped(FORGED)} ({escaped(FILE)}:{inner}) (3 samples, " in "\n".join(titles)
    assert not any(title.startswith("evil 99999") for title in titles)


@pytest.mark.parametrize("interpreter", VERSIONS, ids=str)
def test_own_svg_is_valid_xml_for_any_name(interpreter, tmp_path):
    svg = tmp_path / "out.svg"
    traced(interpreter, "stack", "--weight", "calls", "-o", svg)
    labels = [element.text.split("\n")[0] for element in ElementTree.parse(svg).iter("{http://www.w3.org/2000/svg}title")]
    assert f"{FORGED} ({FILE}:{line_of('hostile.py', 'def inner')})" in labels


def test_calls_rows_are_escaped():
    result = traced(HOST, "calls", "--top", "1000")
    rows = [line for line in result.stdout.decode().splitlines() if FILE in line]
    assert [row.split()[0] for row in rows if row.endswith(f"{FORGED} ({FILE}:{line_of('hostile.py', 'def inner')})")] == ["3"]


def test_dump_shows_thread_and_frames_escaped():
    with Target("hostile.py", "hold") as target:
        assert target.process.stdout.readline() == b"ready\n"
        result = run_tracer("dump", target.pid)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert not RAW.search(text)
    # idle in its sleep, or running between two (under TCG, once in a Debian 13 VM): escaped either way
    assert re.search(r'^Thread \d+ \(0x[0-9a-f]+\) "worker\\x1b\]0;PWNED\\x07\\n": (idle in \w+|running)$',
                     text, re.M), text
    assert f"    {FUNCTION} ({FILE}:" in text


def test_output_through_a_planted_link_is_refused(tmp_path, shared):
    victim = tmp_path / "root-owned.conf"
    victim.write_text("precious\n")
    (shared / "trace.txt").symlink_to(victim)
    for command in ("stack", "gc"):
        result = run_tracer(command, "-o", shared / "trace.txt", "--", *HOST.argv(), "-c", "pass")
        assert result.returncode == USAGE
        assert "cannot write {}: it is a symbolic link in a directory others can write to (not followed)".format(
            shared / "trace.txt") in result.stderr.decode()
    assert victim.read_text() == "precious\n"


def test_output_to_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = run_tracer("stack", "-o", fifo, "--", *HOST.argv(), "-c", "pass")
    assert result.returncode == USAGE
    assert result.stderr.decode() == (f"pybpftrace: cannot write {fifo}: it is a FIFO (only regular files, /dev/null "
                                      "and the standard streams are written) (see `pybpftrace stack --help`)\n")


def test_error_naming_a_process_escapes_its_name(tmp_path):
    planted = tmp_path / "e\x1b]0;X\x07"
    planted.write_bytes(open("/bin/sleep", "rb").read())
    planted.chmod(0o755)
    sleeper = subprocess.Popen([planted, "30"])
    try:
        result = run_tracer("list", sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.stdout.decode() == f"PID {sleeper.pid} (e\\x1b]0;X\\x07): no USDT probes\n"


def crafted(source: str, target, fields: dict) -> None:
    """A copy of an ELF file with section header fields set: {(section, field): value}."""
    from elftools.elf.elffile import ELFFile

    where = {"sh_offset": 0x18, "sh_size": 0x20}
    with open(source, "rb") as stream:
        elf = ELFFile(stream)
        offsets = {name: elf["e_shoff"] + index * elf["e_shentsize"]
                   for index, name in enumerate(section.name for section in elf.iter_sections())}
    data = bytearray(open(source, "rb").read())
    for (section, field), value in fields.items():
        data[offsets[section] + where[field]:offsets[section] + where[field] + 8] = value.to_bytes(8, "little")
    target.write_bytes(bytes(data))


MAPPER = ("import mmap, sys\nfiles = [open(path, 'rb') for path in sys.argv[1:]]\n"
          "maps = [mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ) for file in files]\n"
          "print('ready', flush=True)\nsys.stdin.readline()\n")


@pytest.fixture
def mapping_crafted(target_tmp):
    """A CPython 3.11 process that maps (as data, as any user could) copies of its own binary
    with a .shstrtab 2^40 bytes long, notes at 2^62, and an audit probe whose argument spec
    names no register."""
    huge, far, bad_spec = target_tmp / "huge", target_tmp / "far", target_tmp / "bad-spec"
    crafted(HOST.host_python, huge, {(".shstrtab", "sh_size"): 1 << 40})
    crafted(HOST.host_python, far, {(".note.stapsdt", "sh_offset"): 1 << 62})
    data = open(HOST.host_python, "rb").read()
    assert data.count(b"8@%rbx 8@%r15\0") == 1  # python:audit's arguments
    bad_spec.write_bytes(data.replace(b"8@%rbx 8@%r15\0", b"8@%xyz 8@%r15\0"))
    process = subprocess.Popen([*HOST.argv(), "-c", MAPPER, *map(HOST.inside, (huge, far, bad_spec))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"
    yield process.pid, bad_spec
    process.kill()
    process.wait()


@pytest.mark.parametrize("command", [["list"], ["dump"], ["profile", "--duration", "0.5"]])
def test_a_process_mapping_crafted_binaries_is_still_read(mapping_crafted, command):
    pid, _ = mapping_crafted
    result = run_tracer(*command, pid)
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    if command == ["dump"]:
        assert f"Thread {pid} " in result.stdout.decode()


@pytest.mark.parametrize("command", ["gc", "audit"])
def test_crafted_binaries_cost_no_system_wide_trace(mapping_crafted, command):
    pid, bad_spec = mapping_crafted
    result = run_tracer(command, "--all", "--duration", "0.5")
    stderr = result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in stderr, stderr
    if command == "audit":
        (location,) = probes_of(HOST.host_python).probe("audit").locations  # whichever Debian update
        assert f"pybpftrace: audit at {location.address:#x} in {bad_spec} left out: unknown x86-64 register 'xyz'\n" in stderr
    far = bad_spec.parent / "far"  # its notes at 2^62: passed over, named
    assert f"pybpftrace: passed over {far}: not a readable ELF file: " in stderr


SOURCE_NAMED = """
import sys
def f():
    return 1
f.__code__ = f.__code__.replace(co_filename=sys.argv[1])
for _ in range(1000):
    f()
"""


@pytest.mark.parametrize("command", [["stack"], ["calls", "--sort", "calls"],
                                     ["top", "--once", "--interval", "600", "--sort", "calls"], ["profile"]])
def test_a_source_file_the_target_names_is_never_opened(command, tmp_path):
    """First lines come from the code object, never from the file it names: a FIFO (which
    would block an open) or /dev/tty (the user's terminal) as a function's file is a name.
    (top's one table is the whole run's: its interval outlasts the target, which under TCG
    takes more than a second to start.)"""
    fifo = tmp_path / "source.py"
    os.mkfifo(fifo)
    for named in (str(fifo), "/dev/tty"):
        result = run_tracer(*command, "--", *HOST.argv(), "-c", SOURCE_NAMED, named)
        assert result.returncode == 0, result.stderr.decode()
        if command != ["profile"]:  # a sample may miss so short a call
            assert f"f ({named}:3)" in result.stdout.decode()


@pytest.mark.parametrize("interpreter", VERSIONS, ids=str)
@pytest.mark.parametrize("mode, note", [
    ("loop", "[thread list loops: each thread shown once (1 list)]"),
    ("garbage", "[thread list leads to unreadable memory: threads after it not shown (1 list)]"),
    ("interpreters", "[interpreter list loops or holds more than 64: the interpreters after those not shown]"),
])
def test_a_corrupted_thread_list_is_said_not_repeated_or_invented(interpreter, mode, note):
    """The target links its thread states into a loop, points one at unmapped memory, or links
    its interpreter to itself (ctypes), while its threads sleep: dump shows each thread it can
    reach once, says what it met, and invents none."""
    interpreter.prepare()
    offset = [str(interp_next(interpreter))] if mode == "interpreters" else []
    with Target("corrupt_threads.py", mode, *offset, interpreter=interpreter) as target:
        ready = target.process.stdout.readline().split()
        assert ready[0] == b"ready" and int(ready[1]) == 4
        target.go()
        assert target.process.stdout.readline() == b"corrupted\n"
        result = run_tracer("dump", target.pid)
        target.go()  # set right again before it exits
        assert target.process.wait(timeout=60) == 0
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[2] == note
    threads = [line.split()[1] for line in lines if line.startswith("Thread ")]
    assert "0" not in threads and len(threads) == len(set(threads))
    assert len(threads) == (1 if mode == "garbage" else 4)


@pytest.mark.parametrize("interpreter", VERSIONS, ids=str)
@pytest.mark.parametrize("length", [-1, (1 << 32) + 3])
def test_a_str_length_out_of_range_is_unreadable_not_cut(interpreter, length):
    """A name whose length field is negative or past 32 bits is no name: shown as unreadable,
    never as 3 characters (the length cut to 32 bits) or 255 bytes of the heap beside it."""
    interpreter.prepare()
    with Target("bad_length.py", str(length), interpreter=interpreter) as target:
        assert target.process.stdout.readline() == b"ready\n"
        target.go()
        assert target.process.stdout.readline() == b"corrupted\n"
        result = run_tracer("dump", "--json", target.pid)
        target.go()
        assert target.process.wait(timeout=60) == 0
    assert result.returncode == 0, result.stderr.decode()
    (holder,) = [thread for thread in json.loads(result.stdout)["threads"] if thread["name"] == "holder"]
    assert holder["frames"][0] == {"function": "<unreadable>", "file": interpreter.script("bad_length.py"),
                                   "line": line_of("bad_length.py", "def held") + 2}


def interp_next(interpreter: Interpreter) -> int:
    """Where an interpreter's next is, in this version's PyInterpreterState."""
    binary = inspect_binary(interpreter.host_python)
    return read_interpreter(interpreter.host_python, interpreter.python, binary.version).layout.interp_next


class Tmux:
    """A tmux server of the test's own, 160x40, whose panes' titles and clipboard (OSC 0 and
    52, which tmux takes from what runs in a pane) can be read back."""

    def __init__(self, tmp_path):
        self.socket = str(tmp_path / "tmux")

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def test_top_live_screen_is_intact_in_a_real_terminal(tmp_path):
    assert shutil.which("tmux"), "tmux is missing: run make setup"
    tmux = Tmux(tmp_path)
    command = " ".join(shlex.quote(str(part)) for part in pybpftrace_command(
        "top", "--interval", "0.5", "--", *HOST.command("hostile.py"), "spin"))
    try:
        tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40", "-s", "top", command)
        tmux("set-option", "-g", "set-clipboard", "on")
        deadline = time.monotonic() + TIMEOUT
        while FUNCTION[:24] not in (screen := tmux("capture-pane", "-p", "-t", "top")):
            assert time.monotonic() < deadline, f"top never showed the payload function:\n{screen}"
            time.sleep(0.2)
        title = tmux("display-message", "-p", "-t", "top", "#{pane_title}").strip()
        buffers = tmux("list-buffers")
        tmux("send-keys", "-t", "top", "q")
    finally:
        tmux.close()
    assert "PWNED" not in title
    assert buffers == ""  # nothing written to the clipboard
    lines = screen.splitlines()
    assert lines[0].endswith("(q to quit)") and lines[0][:8].count(":") == 2  # the title, unmoved and whole
    assert "%OWN %TOTAL" in lines[2]  # the header where it belongs: nothing cleared or moved it
    # the payload's row, escaped and whole up to where the screen's width cuts it
    shown = [line[line.index("evil"):].rstrip() for line in lines[3:] if "evil" in line]
    whole = f"{FUNCTION} ({FILE}:"
    assert any(whole.startswith(text) or text.startswith(whole) for text in shown), screen
    assert "pybpftrace:" not in screen  # no status line drawn over the screen


@pytest.mark.parametrize("json_output", [False, True])
def test_imports_nested_deeper_than_any_recursion_limit(target_tmp, json_output):
    """1,100 modules each importing the next: the tree is rendered without recursing, the
    imports past NESTING_MAX (200: depths 201 to 1099) kept at that depth, and said so."""
    for number in range(1100):
        (target_tmp / f"m{number}.py").write_text(f"import m{number + 1}\n" if number < 1099 else "x = 1\n")
    code = f"import sys\nsys.setrecursionlimit(100000)\nsys.path.insert(0, {HOST.inside(target_tmp)!r})\nimport m0\n"
    result = run_tracer("imports", *(["--json"] if json_output else []), "--", *HOST.argv(), "-c", code)
    assert result.returncode == 0 and "Traceback" not in result.stderr.decode(), result.stderr.decode()
    note = "899 imports nested deeper than 200 levels are shown at that depth, their self time unknown"
    if json_output:
        assert json.loads(result.stdout.decode().splitlines()[-1])["note"] == note
    else:
        assert f"[{note}]" in result.stdout.decode().splitlines()


def test_locals_of_damaged_objects_are_said_unreadable(any_interpreter):
    """dump --locals of objects damaged in memory: a bounded answer saying what could not be
    read, no crash, no hang, no traceback."""
    target = Target("hostile_locals.py", interpreter=any_interpreter)
    with target:
        broken, lying = target.process.stdout.readline().split()
        result = run_tracer("dump", "--locals", "--json", str(target.pid))
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    frame = json.loads(result.stdout)["threads"][0]["frames"][0]
    shown = {variable["name"]: variable["repr"] for variable in frame["locals"]}
    assert shown == {"broken": f"<object of an unreadable type at {broken.decode()}>",
                     "lying": f"<unreadable list at {lying.decode()}>",
                     "looped": "[[[[[...]]]]]"}
