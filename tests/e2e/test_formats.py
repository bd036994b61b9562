"""The output formats, read by their real consumers: the SVG flame graph in headless Chromium,
speedscope and Chrome trace files in speedscope's own app, pprof through pprof-format's
decoder; each checked against pybpftrace's own text or folded output of the same run."""

import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest

from support import PID, TIMEOUT, Target, folded_lines, label, pybpftrace_command, trace_held

REPOSITORY = Path(__file__).resolve().parents[2]
BROWSER = REPOSITORY / "tests/browser"
# Screenshots, for a person to look at (docs/flamegraph.png is one of them)
OUTPUT = REPOSITORY / "test-output"
SPAN = 1180  # the SVG's width for the whole weight: 1200 less its margins
HIGHLIGHT = "rgb(230, 0, 230)"


def consumer(*args) -> dict:
    """What tests/browser/consumers.mjs saw."""
    assert (BROWSER / "node_modules/.pybpftrace-installed").exists(), "the tests' npm packages are missing: run make setup"
    assert shutil.which("chromium"), "chromium is missing: run make setup"
    result = subprocess.run(["node", str(BROWSER / "consumers.mjs"), *map(str, args)], capture_output=True,
                            text=True, timeout=10 * TIMEOUT)  # its own waits, each TIMEOUT at most, a view taken twice
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def shots(name: str) -> Path:
    directory = OUTPUT / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def node_totals(folded: dict[str, int]) -> dict[tuple[str, ...], int]:
    """Each call path of the folded stacks with its weight and its callees'."""
    totals: dict[tuple[str, ...], int] = defaultdict(int)
    for stack, weight in folded.items():
        frames = tuple(stack.split(";"))
        for depth in range(1, len(frames) + 1):
            totals[frames[:depth]] += weight
    return dict(totals)


def by_path(frames: list[dict]) -> dict[tuple[str, ...], dict]:
    """The SVG's frames by call path (below its `all` root): a frame's parent is the frame
    one level up whose range holds it."""
    found: dict[tuple[str, ...], dict] = {}
    levels: dict[int, list[dict]] = defaultdict(list)
    for frame in frames:
        levels[frame["depth"]].append(frame)
    paths = {}
    for depth in sorted(levels):
        for frame in levels[depth]:
            if depth == 0:
                paths[id(frame)] = ()
                continue
            (parent,) = [p for p in levels[depth - 1]
                         if p["offset"] <= frame["offset"] and frame["offset"] + frame["weight"] <= p["offset"] + p["weight"]]
            path = paths[id(parent)] + (frame["label"],)
            paths[id(frame)] = path
            assert path not in found, path
            found[path] = frame
    return found


def shop_trace(tmp_path, *files, weight="calls", command="stack"):
    """shop.py traced from the line it waits on, written to each of files; the run."""
    arguments = [command, PID] + (["--weight", weight] if command == "stack" else [])
    for name in files:
        arguments += ["-o", tmp_path / name]
    run = trace_held(Target("shop.py"), *arguments)
    assert run.code == 0, run.stderr
    return run


def test_flame_graph_in_chromium(tmp_path):
    """Every frame of the folded stacks is drawn, as wide as its share of the weight; a click
    zooms a frame to the full width; a search highlights exactly the frames it matches."""
    shop_trace(tmp_path, "shop.folded", "shop.svg")
    folded = folded_lines((tmp_path / "shop.folded").read_text())
    expected = node_totals(folded)
    total = sum(folded.values())
    handle = label("shop.py", "handle", "def handle")
    seen = consumer("flamegraph", tmp_path / "shop.svg", shots("flamegraph"), handle, "^discount ")
    assert seen["errors"] == []
    assert seen["title"].startswith("Flame graph of PID ")
    assert f"Widths: calls, {total:,} calls in all" in seen["subtitle"]

    drawn = by_path(seen["initial"])
    assert set(drawn) == set(expected)
    for path, frame in drawn.items():
        assert frame["width"] == pytest.approx(SPAN * expected[path] / total, rel=1e-9), path
        assert frame["shownWidth"] == pytest.approx(frame["width"], abs=0.01)  # as the browser lays it out
        assert frame["visible"]

    zoomed = by_path(seen["zoomed"])
    (handle_path,) = [path for path in expected if path[-1] == handle]
    for path, frame in zoomed.items():
        if path[: len(handle_path)] == handle_path:  # handle and its callees: handle is the whole width
            assert frame["visible"]
            assert frame["width"] == pytest.approx(SPAN * expected[path] / expected[handle_path], rel=1e-9), path
        elif handle_path[: len(path)] == path:  # its callers
            assert frame["visible"] and frame["width"] == pytest.approx(SPAN)
        else:
            assert not frame["visible"], path
    assert zoomed[handle_path]["width"] == pytest.approx(SPAN)

    searched = by_path(seen["searched"])
    matches = {path for path in searched if path[-1].startswith("discount ")}
    assert len(matches) == 4  # discount and its three recursive calls
    for path, frame in searched.items():
        assert (frame["fill"] == HIGHLIGHT) == (path in matches), path
    share = 100 * expected[min(matches, key=len)] / total  # the outermost discount holds the others
    assert seen["matched"] == f"4 frames match, {share:.2f}% of the weight"
    for name in ("flamegraph.png", "flamegraph-zoomed.png", "flamegraph-search.png"):
        assert (OUTPUT / "flamegraph" / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("weight, sample_types", [
    ("time", [["wall", "nanoseconds"], ["calls", "count"]]),
    ("calls", [["calls", "count"], ["wall", "nanoseconds"]]),
])
def test_pprof_decoded_equals_the_folded_stacks(tmp_path, weight, sample_types):
    shop_trace(tmp_path, "shop.folded", "shop.pb.gz", weight=weight)
    folded = folded_lines((tmp_path / "shop.folded").read_text())
    decoded = consumer("pprof", tmp_path / "shop.pb.gz")
    assert decoded["sampleTypes"] == sample_types
    assert decoded["defaultSampleType"] == sample_types[0][0]
    totals: dict[str, int] = defaultdict(int)
    for sample in decoded["samples"]:
        stack = ";".join(f"{f['name']} ({f['file']}:{f['line']})" for f in reversed(sample["stack"]))
        totals[stack] += sample["values"][0]
        assert sample["labels"]["thread"].startswith("thread ")
    if weight == "time":  # folded stacks are in microseconds, rounded
        totals = {stack: round(ns / 1000) for stack, ns in totals.items()}
    assert {stack: value for stack, value in totals.items() if value} == folded
    names = {frame.rsplit(" (", 1)[0] for stack in folded for frame in stack.split(";")}
    assert {function["name"] for function in decoded["functions"]} == names
    handle = next(f for f in decoded["functions"] if f["name"] == "handle")
    assert handle["startLine"] == int(label("shop.py", "handle", "def handle").rsplit(":", 1)[1][:-1])


def test_calls_writes_a_flat_pprof(tmp_path):
    shop_trace(tmp_path, "calls.jsonl", "calls.pb.gz", command="calls")
    functions = json.loads((tmp_path / "calls.jsonl").read_text())["functions"]
    decoded = consumer("pprof", tmp_path / "calls.pb.gz")
    assert decoded["sampleTypes"] == [["wall", "nanoseconds"], ["calls", "count"]]
    samples = {(s["stack"][0]["name"], s["stack"][0]["file"]): s["values"] for s in decoded["samples"]}
    assert all(len(s["stack"]) == 1 for s in decoded["samples"])
    for function in functions:  # the first 20, as the table shows them
        assert samples[(function["function"], function["file"])] == [function["self_ns"], function["calls"]]


def speedscope_schema() -> dict:
    path = BROWSER / "node_modules/speedscope/dist/release/file-format-schema.json"
    assert path.exists(), "speedscope's schema is missing: run make setup"
    return json.loads(path.read_text())


def test_sampled_speedscope_loads_in_speedscope(tmp_path):
    shop_trace(tmp_path, "shop.folded", "shop.speedscope.json")
    document = json.loads((tmp_path / "shop.speedscope.json").read_text())
    jsonschema.validate(document, speedscope_schema())
    folded = folded_lines((tmp_path / "shop.folded").read_text())
    (profile,) = document["profiles"]  # one thread
    assert profile["type"] == "sampled" and sum(profile["weights"]) == sum(folded.values())
    seen = consumer("speedscope", tmp_path / "shop.speedscope.json", shots("speedscope") / "sampled.png")
    assert (seen["wentWrong"], seen["dialogs"], seen["errors"]) == (False, [], [])
    (shown,) = seen["profiles"]
    names = {frame.rsplit(" (", 1)[0] for stack in folded for frame in stack.split(";")}
    assert names <= set(shown["lines"])
    assert any(line.startswith("thread ") for line in shown["lines"])


def test_evented_speedscope_has_a_profile_per_thread(tmp_path):
    """threads.py: four workers started after attaching, each with its own calls."""
    jsonl, document_path = tmp_path / "threads.jsonl", tmp_path / "threads.speedscope.json"
    run = trace_held(Target("threads.py"), "stack", PID, "--filename", "threads.py", "-o", jsonl, "-o", document_path)
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    document = json.loads(document_path.read_text())
    jsonschema.validate(document, speedscope_schema())
    tids = {event["tid"] for event in events}
    assert len(document["profiles"]) == len(tids) == 5  # the main thread and four workers
    frames = document["shared"]["frames"]
    for profile in document["profiles"]:
        assert profile["type"] == "evented" and profile["unit"] == "nanoseconds"
        tid = int(profile["name"].split()[1])
        calls = [e["function"] for e in events if e["tid"] == tid and e["event"] == "call"]
        opened = [frames[e["frame"]]["name"] for e in profile["events"] if e["type"] == "O"]
        assert sorted(opened) == sorted(calls)  # the main thread's <module> too: it began before tracing
    seen = consumer("speedscope", document_path, shots("speedscope") / "evented.png")
    assert (seen["wentWrong"], seen["dialogs"], seen["errors"]) == (False, [], [])
    assert len(seen["profiles"]) == 5
    workers = [shown for shown in seen["profiles"] if "worker" in shown["lines"]]
    assert len(workers) == 4 and all({"work", "step"} <= set(shown["lines"]) for shown in workers)


def run_pid(events: list[dict]) -> int:
    return events[0]["pid"]


def test_chrome_trace_spans_are_the_calls(tmp_path):
    """calls.py's calls as complete events, nested as they ran, with the exact begin and
    duration that the JSON lines of the same run give."""
    jsonl, trace = tmp_path / "calls.jsonl", tmp_path / "calls.trace.json"
    run = trace_held(Target("calls.py"), "stack", PID, "--filename", "calls.py", "-o", jsonl, "-o", trace)
    assert run.code == 0, run.stderr
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    document = json.loads(trace.read_text())
    spans = [e for e in document["traceEvents"] if e["ph"] == "X"]
    pid = tid = run_pid(events)
    assert {(e["pid"], e["tid"]) for e in spans} == {(pid, tid)}
    names = {e["name"]: e["args"]["name"] for e in document["traceEvents"] if e["ph"] == "M"}
    assert names == {"thread_name": f"thread {tid} (python3.11)", "process_name": "python3.11"}

    # Each return of the JSON lines is a span, in the same order, with its exact duration
    returns = [e for e in events if e["event"] == "return"]
    assert [span["name"] for span in spans] == [e["function"] for e in returns]
    for span, returned in zip(spans, returns):
        if "duration_ns" in returned:
            assert round(span["dur"] * 1000) == returned["duration_ns"]
            assert round((span["ts"] + span["dur"]) * 1000) == round(returned["time"] * 1e9)
        else:
            assert span["args"]["inexact"] == "began before tracing" and span["ts"] == 0
    calls_at = [round(e["time"] * 1e9) for e in events if e["event"] == "call" and "note" not in e]
    assert sorted(round(span["ts"] * 1000) for span in spans if "inexact" not in span["args"]) == calls_at

    # Nesting: each span lies within the one it was called from
    def tree(inside):
        children = [s for s in spans if s is not inside and within(s, inside)
                    and not any(within(s, o) and within(o, inside) for o in spans if o not in (s, inside))]
        return [(s["name"], tree(s)) for s in sorted(children, key=lambda s: s["ts"])]

    def within(span, outer):
        return outer["ts"] <= span["ts"] and span["ts"] + span["dur"] <= outer["ts"] + outer["dur"]

    (module,) = [s for s in spans if s["name"] == "<module>"]
    assert tree(module) == [("top", [("middle", [("leaf", []), ("leaf", [])]), ("leaf", [])])]
    seen = consumer("speedscope", trace, shots("speedscope") / "chrome.png")
    assert (seen["wentWrong"], seen["dialogs"], seen["errors"]) == (False, [], [])
    assert {"top", "middle", "leaf"} <= {line.split(" {")[0] for line in seen["profiles"][0]["lines"]}


def read_terminal(fd: int, until, timeout: float = TIMEOUT) -> bytes:
    """What a pseudo-terminal shows, until `until(text)` is true or it closes."""
    text = b""
    while not until(text):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"nothing more on the terminal: {text!r}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        text += chunk
    return text


ERASE = b"\r\x1b[K"


def on_a_terminal(*args, until) -> bytes:
    """What pybpftrace writes to its stderr, a 300-column pseudo-terminal, until `until(text)`,
    then on SIGINT until it exits (status 0)."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 300, 0, 0))  # rows, columns
    tracer = subprocess.Popen(pybpftrace_command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=secondary)
    os.close(secondary)
    try:
        text = read_terminal(primary, until)
        tracer.send_signal(signal.SIGINT)
        text += read_terminal(primary, lambda text: False)
        assert tracer.wait(TIMEOUT) == 0
    finally:
        os.close(primary)
        if tracer.poll() is None:
            tracer.kill()
    return text


@pytest.mark.parametrize("quiet", [False, True])
def test_status_line_on_a_terminal(tmp_path, quiet):
    """On a terminal, one line rewritten in place while tracing (erased at the end); none
    with --quiet, and none when stderr is not a terminal."""
    with Target("forever.py") as target:
        text = on_a_terminal("stack", target.pid, "-o", tmp_path / "forever.trace.json", *(["-q"] if quiet else []),
                             until=lambda text: b"Ctrl-C to stop" in text
                             and (quiet or text.count(ERASE + b"pybpftrace: ") >= 2))
    last_line = text.decode().rstrip("\r\n").rsplit("\n", 1)[-1]
    summary = last_line.rsplit(ERASE.decode(), 1)[-1]
    # (a loaded machine may fill the ring under forever.py's calls: the summary then says so)
    assert re.fullmatch(r"pybpftrace: \d+ events, \d+ lost( \[[^]]+\])?, \d+ threads, [\d.]+ s \(SIGINT\)", summary)
    if quiet:
        assert ERASE not in text
        return
    assert last_line.endswith(ERASE.decode() + summary)  # the status line, erased
    status = last_line.split(ERASE.decode())[1]
    assert re.fullmatch(r"pybpftrace: [\d.]+ s, [\d,]+ events, [\d,]+ lost, chrome to \S+ at the end \([\d,]+ calls held\)",
                        status), status
    assert f"chrome to {tmp_path}/forever.trace.json" in status


def test_no_status_line_when_stderr_is_a_pipe(tmp_path):
    run = trace_held(Target("calls.py"), "stack", PID, "-o", tmp_path / "calls.trace.json")
    assert run.code == 0 and "\x1b[K" not in run.stderr and "\r" not in run.stderr


def test_sudo_finds_pybpftrace():
    """Set up links pybpftrace into /usr/local/bin, on sudo's secure_path."""
    result = subprocess.run(["sudo", "-n", "pybpftrace", "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pybpftrace, version ")
