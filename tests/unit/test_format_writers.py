"""The output formats' pure parts: spans rebuilt from call events (bounds not seen included),
speedscope's schema, the SVG's layout, choosing formats from file names, the status line."""

import io
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import click
import jsonschema
import pytest

from pybpftrace.events import EVENT_CALL, EVENT_RETURN, CallEvent
from pybpftrace.formats import format_for, model, speedscope
from pybpftrace.formats.flamegraph import fitted, svg
from pybpftrace.formats.options import open_outputs
from pybpftrace.progress import ERASE, Progress, wanted
from pybpftrace.stacks import Spans

SCHEMA = Path(__file__).resolve().parents[1] / "browser/node_modules/speedscope/dist/release/file-format-schema.json"
OFFERED = ["text", "json", "folded", "svg", "speedscope", "chrome", "pprof"]


def event(time, kind, depth, function, tid=7):
    return CallEvent(time, 1, tid, kind, depth, function, "app.py", 10)


def spans_of(events, end=1000):
    timeline = model.Timeline()
    spans = Spans(timeline, 0, lambda e: model.Frame(e.function, e.file, e.line), lambda pid, tid: model.Thread(pid, tid))
    for e in events:
        spans.feed(e)
    spans.finish(end)
    return {(s.frame.function, s.begin, s.end, s.depth, s.inexact) for s in timeline.spans(7)}, timeline


def test_spans_of_calls_seen_whole():
    found, _ = spans_of([
        event(10, EVENT_CALL, 0, "outer"), event(20, EVENT_CALL, 1, "inner"),
        event(30, EVENT_RETURN, 1, "inner"), event(40, EVENT_RETURN, 0, "outer"),
    ])
    assert found == {("outer", 10, 40, 0, 0), ("inner", 20, 30, 1, 0)}


def test_spans_whose_bounds_were_not_seen():
    found, timeline = spans_of([
        event(10, EVENT_CALL, 0, "main"),
        event(20, EVENT_CALL, 1, "sibling"), event(25, EVENT_RETURN, 1, "sibling"),
        event(40, EVENT_RETURN, 1, "lost_entry"),  # began after its sibling returned
        event(50, EVENT_CALL, 1, "lost_return"), event(60, EVENT_CALL, 2, "deeper"), event(70, EVENT_RETURN, 2, "deeper"),
        event(80, EVENT_RETURN, 0, "main"),  # lost_return's return was lost: it ended by 70
        event(90, EVENT_RETURN, -1, "caller"),  # began before tracing
        event(95, EVENT_CALL, -1, "running"),
    ], end=100)
    assert found == {
        ("sibling", 20, 25, 1, 0),
        ("lost_entry", 25, 40, 1, model.ENTRY_NOT_SEEN),
        ("deeper", 60, 70, 2, 0),
        ("lost_return", 50, 70, 1, model.RETURN_NOT_SEEN),
        ("main", 10, 80, 0, 0),
        ("caller", 0, 90, -1, model.BEGAN_BEFORE_TRACING),
        ("running", 95, 100, -1, model.STILL_RUNNING),
    }
    assert len(timeline) == 7
    # in call order, each span lies within the one open before it at a shallower depth
    ordered = timeline.in_call_order(7)
    assert [s.frame.function for s in ordered][:3] == ["caller", "main", "sibling"]


def evented_events(timeline):
    document = speedscope.evented(timeline)
    (profile,) = document["profiles"]
    frames = document["shared"]["frames"]
    return document, profile, [(e["type"], frames[e["frame"]]["name"], e["at"]) for e in profile["events"]]


def test_evented_speedscope_nests_and_follows_the_schema():
    assert SCHEMA.exists(), "speedscope's schema is missing: run make setup"
    _, timeline = spans_of([
        event(10, EVENT_CALL, 0, "main"), event(20, EVENT_CALL, 1, "a"), event(30, EVENT_RETURN, 1, "a"),
        event(30, EVENT_CALL, 1, "b"), event(35, EVENT_RETURN, 1, "b"), event(40, EVENT_RETURN, 0, "main"),
        event(50, EVENT_RETURN, -1, "caller"),
    ], end=60)
    timeline.meta = model.Meta("pybpftrace stack 1", "PID 1", 0.00000006)
    document, profile, events = evented_events(timeline)
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert events == [("O", "caller", 0), ("O", "main", 10), ("O", "a", 20), ("C", "a", 30), ("O", "b", 30),
                      ("C", "b", 35), ("C", "main", 40), ("C", "caller", 50)]
    assert profile["name"] == "thread 7 (1 began before tracing)"


def stacks(per_thread=False):
    result = model.Stacks(model.CALL_COUNT, model.Meta("pybpftrace stack 1 -o x.svg", "PID 1", 1.5), per_thread=per_thread)
    main, work = model.Frame("main", "app.py", 1), model.Frame("work", "app.py", 5)
    result.add(model.Thread(1, 1, "python"), (main,), 1)
    result.add(model.Thread(1, 1, "python"), (main, work), 3)
    result.add(model.Thread(1, 2), (main, work), 4)
    return result


def frames_of(document: str) -> list[tuple[str, float, float, float]]:
    root = ElementTree.fromstring(document)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    found = []
    for group in root.iterfind(".//svg:g[@class='frame']", ns):
        rect = group.find("svg:rect", ns)
        label = group.find("svg:title", ns).text.split("\n")[0]
        found.append((label, float(rect.get("x")), float(rect.get("width")), float(rect.get("y"))))
    return found


@pytest.mark.parametrize("icicle", [False, True])
def test_svg_frames_are_exact_shares(icicle):
    found = {label: (x, width, y) for label, x, width, y in frames_of(svg(stacks(), icicle))}
    assert set(found) == {"all", "main (app.py:1)", "work (app.py:5)"}
    assert found["all"][1] == 1180 and found["work (app.py:5)"][1] == 1180 * 7 / 8
    assert found["main (app.py:1)"][0] == found["work (app.py:5)"][0] == 10  # callees start at their caller's left
    depths = [found[label][2] for label in ("all", "main (app.py:1)", "work (app.py:5)")]
    assert depths == sorted(depths, reverse=not icicle)  # flames grow up, icicles down


def test_svg_per_thread_and_escaping():
    document = svg(stacks(per_thread=True))
    labels = [label for label, *_ in frames_of(document)]
    assert {"thread 1 (python)", "thread 2"} <= set(labels)
    weird = model.Stacks(model.CALL_COUNT)
    weird.add(model.Thread(1, 1), (model.Frame("<lambda>", "a&b.py", 1),), 1)
    assert "<lambda> (a&b.py:1)" in [label for label, *_ in frames_of(svg(weird))]
    empty = svg(model.Stacks(model.CALL_COUNT))
    assert "No stacks to draw" in empty and frames_of(empty) == []


def test_labels_fit_their_frames():
    label = "handle_request (/srv/app/server.py:24)"
    assert fitted(label, 1000) == label
    assert fitted(label, 6 + 7.2 * 14) == "handle_request"
    assert fitted(label, 6 + 7.2 * 8) == "handle.."
    assert fitted(label, 10) == ""


@pytest.mark.parametrize("path, expected", [
    ("out.svg", "svg"), ("out.folded", "folded"), ("out.speedscope.json", "speedscope"),
    ("out.trace.json", "chrome"), ("out.chrome.json", "chrome"), ("out.pb.gz", "pprof"), ("out.pprof", "pprof"),
    ("out.txt", "text"), ("out.jsonl", "json"), ("out.json", None), ("out", None),
])
def test_formats_from_file_names(path, expected):
    assert format_for(path) == expected


def test_outputs_chosen_and_checked(tmp_path):
    outputs = open_outputs([str(tmp_path / "a.svg"), str(tmp_path / "b.log")], None, "text", OFFERED)
    assert [(o.format, o.path) for o in outputs.items] == [("svg", str(tmp_path / "a.svg")), ("text", str(tmp_path / "b.log"))]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.svg", "b.log"]  # opened before tracing
    assert [o.format for o in open_outputs([], "pprof", "text", OFFERED).items] == ["pprof"]
    assert [o.format for o in open_outputs([str(tmp_path / "x.json")], None, "json", OFFERED).items] == ["json"]
    with pytest.raises(click.UsageError, match="writes text, json, pprof, not svg"):
        open_outputs([str(tmp_path / "a.svg")], None, "text", ["text", "json", "pprof"])
    with pytest.raises(click.UsageError, match="no directory"):
        open_outputs([str(tmp_path / "none/a.svg")], None, "text", OFFERED)


class Terminal(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_status_line_only_where_it_does_not_mix_with_output():
    assert wanted(False, False, Terminal(True), Terminal(True))
    assert not wanted(True, False, Terminal(True), Terminal(True))  # --quiet
    assert not wanted(False, False, Terminal(False), Terminal(True))  # stderr piped
    assert not wanted(False, True, Terminal(True), Terminal(True))  # the trace's lines go there too
    assert wanted(False, True, Terminal(True), Terminal(False))


def test_status_line_rewritten_in_place_and_erased():
    stream = Terminal(True)
    progress = Progress(lambda: (12345, 2), lambda: "svg to out.svg at the end", stream=stream)
    progress.update(0, 1_500_000_000)
    progress.update(0, 1_600_000_000)  # too soon: not rewritten
    progress.update(0, 2_000_000_000)
    progress.clear()
    assert stream.getvalue() == (ERASE + "pybpftrace: 1.5 s, 12,345 events, 2 lost, svg to out.svg at the end"
                                 + ERASE + "pybpftrace: 2.0 s, 12,345 events, 2 lost, svg to out.svg at the end" + ERASE)


def test_a_timeline_past_what_it_holds_in_memory_keeps_its_spans_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "HELD_SPANS", 4)
    monkeypatch.setattr(model, "_READ_BYTES", 40 * 3)  # read back across segments' chunks
    spilled, held = model.Timeline(spill_to=str(tmp_path)), model.Timeline()
    frames = [model.Frame(f"f{n}", "x.py", n) for n in range(3)]
    for n in range(23):
        span = model.Span(frames[n % 3], n, n + 1, n % 4, n % 2)
        for timeline in (spilled, held):
            timeline.add(n % 2, span)
    assert list(tmp_path.iterdir()) == []  # no name on disk
    assert len(spilled) == len(held) == 23 and spilled.thread_ids() == [0, 1]
    for tid in (0, 1):
        assert list(spilled.spans(tid)) == list(held.spans(tid))
    spilled.close()
