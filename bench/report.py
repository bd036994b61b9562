"""From runs to figures: medians, ratios, the goals' verdicts, and BENCHMARKS.md. Pure: no
processes, no clock, so that tests can check it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .tracers import AGGREGATED, ENTRY_FLOOR, ENTRY_ONLY, ENTRY_ONLY_PEERS, HOOK, PEER_FOR

UNTRACED = "untraced"
COST_GOAL = 1.15  # aggregated modes: cost per event at most this times the floor's
HOOK_GOAL = 1.25  # the eval-frame route's hook alone: the target at most this much slower


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    """The median of the values that are there (None when none is)."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


@dataclass
class Row:
    """One tracer on one workload under one interpreter: medians of its runs."""

    interpreter: str
    workload: str
    tracer: str
    kind: str  # "untraced", "floor", "pybpftrace", "peer"
    status: str  # "measured", "not available", "failed", "skipped"
    note: str = ""
    runs: int = 0
    slowdown: Optional[float] = None
    cost_ratio: Optional[float] = None
    per_event_ns: Optional[float] = None  # above the untraced run
    lost: Optional[int] = None  # the most lost in any run
    lost_share: Optional[float] = None
    attach_seconds: Optional[float] = None
    cpu_seconds: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    comparable: bool = True  # a peer that sees the events (False: its figures are not the job's)
    partial: bool = False  # it ended before the work did
    attach_vs_uflow: Optional[float] = None
    rss_vs_uflow: Optional[float] = None


@dataclass
class Cell:
    """The raw material of a row, as results.json keeps it."""

    interpreter: str
    workload: str
    tracer: str
    kind: str
    status: str = "measured"
    reason: str = ""
    runs: list[dict] = field(default_factory=list)

    def good_runs(self) -> list[dict]:
        return [run for run in self.runs if "error" not in run]

    def median_of(self, key: str) -> Optional[float]:
        return median(run.get(key) for run in self.good_runs())


def summarize(cells: list[Cell], counts: Optional[dict]) -> list[Row]:
    """The rows of one workload under one interpreter, from its cells (untraced, floor,
    modes, peers) and its exact event counts."""
    by_name = {cell.tracer: cell for cell in cells}
    untraced = _seconds(by_name.get(UNTRACED))
    floors = {}  # per event, of the floor probing both and of the one probing entries only
    if counts:
        for name in ("floor", ENTRY_FLOOR):
            if name in by_name:
                floors[name] = per_event_ns(_seconds(by_name[name]), untraced, _probe_hits(by_name[name], [], counts))
    rows = [_row(cell, untraced, floors.get(ENTRY_FLOOR if cell.tracer in ENTRY_ONLY else "floor"), counts)
            for cell in cells]
    uflow = next((row for row in rows if row.tracer == "uflow" and row.status == "measured"), None)
    for row in rows:
        if uflow and row.kind == "pybpftrace" and row.status == "measured":
            row.attach_vs_uflow = ratio(row.attach_seconds, uflow.attach_seconds)
            row.rss_vs_uflow = ratio(row.peak_rss_mib, uflow.peak_rss_mib)
    return rows


def per_event_ns(seconds: Optional[float], untraced: Optional[float], events: Optional[float]) -> Optional[float]:
    """What tracing added to the run, per event."""
    if seconds is None or untraced is None or not events:
        return None
    return (seconds - untraced) / events * 1e9


def _seconds(cell: Optional[Cell]) -> Optional[float]:
    return cell.median_of("seconds") if cell else None


def _probe_hits(cell: Cell, good: list[dict], counts: dict) -> Optional[float]:
    """The probe hits a tracer paid for during the work. pybpftrace counts what its programs
    handled (top probes entries only); a peer pays for every hit of the probes it places,
    seen or lost. Scaled from the whole run to the work (the rest is a few dozen events)."""
    total = counts["entries"] + counts["returns"]
    if cell.kind == "pybpftrace":
        hits = median(run.get("events") for run in good)
    elif cell.tracer in ENTRY_ONLY:
        hits = counts["entries"]
    else:
        hits = total
    return hits * counts["work_events"] / total if hits is not None and total else None


def _row(cell: Cell, untraced: Optional[float], floor_ns: Optional[float], counts: Optional[dict]) -> Row:
    row = Row(cell.interpreter, cell.workload, cell.tracer, cell.kind, cell.status, cell.reason)
    good = cell.good_runs()
    row.runs = len(good)
    if cell.status != "measured" or not good:
        if cell.status == "measured":
            row.status = "failed"
            row.note = _first_error(cell)
        return row
    seconds = cell.median_of("seconds")
    row.slowdown = ratio(seconds, untraced)
    row.attach_seconds = cell.median_of("attach_seconds")
    row.cpu_seconds = cell.median_of("cpu_seconds")
    row.peak_rss_mib = cell.median_of("peak_rss_mib")
    if cell.kind == "untraced":
        row.note = f"{counts['work_events']:,} events in the work" if counts else ""
        return row
    if counts:
        row.per_event_ns = per_event_ns(seconds, untraced, _probe_hits(cell, good, counts))
        if cell.tracer != HOOK:  # which probes nothing: its cost per call is the hook's alone
            row.cost_ratio = ratio(row.per_event_ns, floor_ns)  # a floor against itself: 1.00
    if cell.kind == "pybpftrace":
        _losses(row, [run.get("lost") for run in good], [run.get("events") for run in good])
        _partial(row, good, counts)
    elif cell.kind == "peer" and counts:
        _peer(row, good, counts)
    if len(good) < len(cell.runs):
        row.note = _join(row.note, f"{len(cell.runs) - len(good)} of {len(cell.runs)} runs failed: {_first_error(cell)}")
    return row


def _partial(row: Row, good: list[dict], counts: Optional[dict]) -> None:
    """A mode that ended before the work did (top --once: after one interval) handled fewer
    events than there were calls: its figures cover part of the run, and are not judged."""
    short = [run for run in good if run.get("ended_first")
             or (counts and run.get("events") is not None and run["events"] < counts["entries"])]
    if short:
        row.partial = True
        row.note = _join(row.note, f"ended before the work did ({len(short)} of {len(good)} runs): covers part of it, not judged")


def _losses(row: Row, lost: list[Optional[int]], events: list[Optional[int]]) -> None:
    """The worst run's loss, and its share of the events that run handled."""
    pairs = [(l, e) for l, e in zip(lost, events) if l is not None]
    if not pairs:
        return
    worst, handled = max(pairs, key=lambda pair: pair[0])
    row.lost = worst
    row.lost_share = ratio(worst, handled)


def _peer(row: Row, good: list[dict], counts: dict) -> None:
    """A peer counts what it saw; what it should have seen is the counting run's. One that
    sees no function entries where there were some is not doing the job (CPython 3.11
    fires them only while the line semaphore is raised, which no peer does)."""
    entries_seen = median(run.get("entries") for run in good)
    if counts["entries"] and not entries_seen:
        row.comparable = False
        row.note = _join(row.note, f"saw no function entries (of {counts['entries']:,}): not comparable")
        row.slowdown = row.cost_ratio = row.per_event_ns = None
        return
    expected = counts["entries"] if row.tracer in ENTRY_ONLY_PEERS else counts["entries"] + counts["returns"]
    seen = [run.get("events") for run in good]
    _losses(row, [max(0, expected - s) if s is not None else None for s in seen], [expected] * len(seen))
    if row.tracer in ENTRY_ONLY_PEERS:
        row.note = _join(row.note, "probes entries only")


def _first_error(cell: Cell) -> str:
    return next((run["error"] for run in cell.runs if "error" in run), "no runs")


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


# --- goals -------------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    verdict: str  # "met", "not met", "not evaluated"
    evidence: str


def _where(row: Row) -> str:
    return f"{row.tracer} on {row.workload} ({row.interpreter})"


def _verdict(text: str, checked: list[tuple[Row, bool, str]], missing: str) -> Goal:
    """checked: (row, passed, figure) for every row the goal applies to."""
    if not checked:
        return Goal(text, "not evaluated", missing or "no row to judge")
    failed = [f"{_where(row)}: {figure}" for row, passed, figure in checked if not passed]
    if failed:
        return Goal(text, "not met", "; ".join(failed) + (f". {missing}" if missing else ""))
    figures = ", ".join(f"{_where(row)}: {figure}" for row, _, figure in checked)
    return Goal(text, "met", figures + (f". {missing}" if missing else ""))


def _unavailable(rows: list[Row], names: Iterable[str]) -> str:
    """Which of these modes could not be measured anywhere (a mode of one route only is not
    available on the other's interpreters: that is no gap), said once."""
    measured = {row.tracer for row in rows if row.status == "measured"}
    missing = sorted({row.tracer for row in rows if row.tracer in names and row.status == "not available"} - measured)
    return f"Not available, so not judged: {', '.join(missing)}" if missing else ""


def goals(rows: list[Row]) -> list[Goal]:
    measured = [row for row in rows if row.status == "measured" and not row.partial]
    aggregated = [row for row in measured if row.tracer in AGGREGATED]
    missing_aggregated = _unavailable(rows, AGGREGATED)
    result = [
        _verdict(
            f"Aggregated modes ({', '.join(AGGREGATED)}): cost per event at most {COST_GOAL}x the floor's",
            [(row, row.cost_ratio <= COST_GOAL, f"{row.cost_ratio:.2f}x") for row in aggregated if row.cost_ratio is not None],
            missing_aggregated,
        ),
        _verdict(
            "Aggregated modes: 0 events lost with two threads at full rate",
            [(row, row.lost == 0, f"{row.lost:,} lost") for row in aggregated if row.workload == "threads" and row.lost is not None],
            missing_aggregated,
        ),
        _verdict(
            "stack -o FILE: 0 events lost at the full rate of one traced thread",
            [(row, row.lost == 0, f"{row.lost:,} lost") for row in measured
             if row.tracer == "stack -o FILE" and row.workload != "threads" and row.lost is not None],
            _unavailable(rows, ("stack -o FILE",)),
        ),
        _verdict(
            f"The eval-frame route's hook alone (every call through the evaluator, nothing probed): the target at "
            f"most {HOOK_GOAL}x slower than untraced",
            [(row, row.slowdown <= HOOK_GOAL, f"{row.slowdown:.2f}x") for row in measured
             if row.tracer == HOOK and row.slowdown is not None],
            _unavailable(rows, (HOOK,)),
        ),
        _against_uflow(rows, "start-to-attached below uflow's", "attach_vs_uflow"),
        _against_uflow(rows, "peak RSS below uflow's", "rss_vs_uflow"),
        _against_peers(rows),
    ]
    return result


def _against_uflow(rows: list[Row], text: str, field_name: str) -> Goal:
    checked = [
        (row, getattr(row, field_name) < 1, f"{getattr(row, field_name):.2f}x uflow's")
        for row in rows if row.kind == "pybpftrace" and getattr(row, field_name) is not None
    ]
    return _verdict(f"Every mode: {text}", checked, "" if checked else "uflow ran nowhere")


def _against_peers(rows: list[Row]) -> Goal:
    """Each mode's slowdown against its peer's on the same workload, where the peer works."""
    peers = {(row.interpreter, row.workload, row.tracer): row for row in rows
             if row.kind == "peer" and row.status == "measured" and row.comparable and row.slowdown}
    checked = []
    for row in rows:
        peer = peers.get((row.interpreter, row.workload, PEER_FOR.get(row.tracer, "")))
        if row.kind == "pybpftrace" and row.slowdown and peer and not row.partial:
            figure = (f"{row.slowdown:.1f}x vs {peer.tracer}'s {peer.slowdown:.1f}x (per event "
                      f"{fmt(row.cost_ratio)} vs {fmt(peer.cost_ratio)} of the floor's)")
            checked.append((row, row.slowdown <= peer.slowdown, figure))
    why = "" if checked else "no peer doing the same job worked on any workload here (see the notes)"
    return _verdict("Every mode: slowdown no worse than the peer doing the same job (uflow for stack, ucalls for calls and top), where the peer works", checked, why)


# --- markdown ----------------------------------------------------------------------------


def fmt(value: Optional[float], pattern: str = "{:.2f}", missing: str = "—") -> str:
    return missing if value is None else pattern.format(value)


def lost_text(row: Row) -> str:
    if row.lost is None:
        return "—"
    if row.lost == 0:
        return "0"
    share = f" ({row.lost_share:.0%})" if row.lost_share is not None else ""
    return f"{row.lost:,}{share}"


def versus(value: Optional[float], against: Optional[float], unit: str, pattern: str) -> str:
    if value is None:
        return "—"
    text = pattern.format(value) + unit
    return text + (f" ({against:.2f}x uflow)" if against is not None else "")


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| Python | workload | tracer | slowdown | cost/event vs floor | lost (worst run) | start→attached | tracer CPU | peak RSS | notes |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        if row.status in ("measured",):
            cells = [
                fmt(row.slowdown, "{:.1f}x"), fmt(row.cost_ratio, "{:.2f}"), lost_text(row),
                versus(row.attach_seconds, row.attach_vs_uflow, " s", "{:.2f}"),
                fmt(row.cpu_seconds, "{:.2f} s"),
                versus(row.peak_rss_mib, row.rss_vs_uflow, " MiB", "{:.0f}"),
            ]
            note = row.note
        else:
            cells = ["—"] * 6
            note = _join(row.status, row.note)
        lines.append(f"| {row.interpreter} | {row.workload} | {row.tracer} | " + " | ".join(cells) + f" | {_escape(note)} |")
    return lines


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def goals_section(found: list[Goal]) -> list[str]:
    lines = ["| goal | verdict | figures |", "| --- | --- | --- |"]
    for goal in found:
        lines.append(f"| {_escape(goal.text)} | **{goal.verdict}** | {_escape(goal.evidence)} |")
    return lines


COLUMNS = """\
- **slowdown**: the workload's own time (it times its work with `time.perf_counter`) under the
  tracer, over its untraced time; medians of the runs.
- **cost/event vs floor**: what the tracer adds to the untraced time, per probe hit it pays
  for during the work, over the same figure for the floor: 1.00 is the floor, 1.15 costs 15%
  more per event. pybpftrace's hits are those its summary line counts (`top` probes entries
  only, the other modes both probes); a peer pays for every hit of the probes it places,
  seen or lost (ucalls: entries only). The floor is an empty BPF program
  (`bench/floor.bpf.c`, handlers that return 0) generated and attached by pybpftrace's own
  code to the same `function__entry`/`function__return` locations as `stack`, with the same
  semaphores raised (on 3.11 the line semaphore too): what any tracer of these probes pays
  at the least. What probes entries only (`top`, plain `ucalls`) is held against `floor
  (entries)`, the same program on `function__entry` alone: per hit, the interpreter's fixed
  per-call cost of a raised semaphore weighs twice as much when only entries are hit, so the
  two-probe floor would not be a fair base. `floor (clock)` is the two-probe floor with one
  clock read (`bpf_ktime_get_ns`) in each handler: what the modes that time calls (`stack
  --folded`, `calls`) pay at the least, beyond the floor, for their timestamps. On a workload
  with few events (realistic) this ratio is the noisiest figure.
- **lost (worst run)**: events lost in the worst run, and their share of the events. For
  pybpftrace, from its summary line (`pybpftrace: N events, M lost`); for the peers, the
  events the counting run says happened while they traced minus the events they printed or
  counted.
- **start→attached**: from launching the tracer to its saying it traces (`pybpftrace:
  tracing`, `floor: tracing`, uflow's and ucalls' `Tracing ...`, bpftrace's `Attaching N
  probes`); bpftrace says that before it attaches, so for it the target's function probe
  semaphores must have risen too. In brackets, as a ratio to uflow's on the same workload.
- **tracer CPU**, **peak RSS**: user + system time and maximum resident set of the tracer
  process, from `os.wait4`. A uprobe's handler runs in the traced thread, so the BPF
  program's own time shows in the slowdown, not here.
- Events are counted exactly: a counting run of the floor (`python -m bench.floor --count`)
  counts the hits of each probe, once for the whole run and once with the work skipped; the
  difference is the work's.
"""


def document(meta: dict, workloads: list[dict], rows: list[Row], found: list[Goal], failures: list[str]) -> str:
    """BENCHMARKS.md. failures: what the failures seen mean, said after the run's notes."""
    lines = [
        "# Benchmarks",
        "",
        "`sudo make bench` measures, in one run and side by side on the same targets, what tracing costs a",
        "CPython process under pybpftrace's modes, under an empty BPF program on the same probes (the",
        "floor) and under the peers (bcc's `uflow` and `ucalls`, and a bpftrace script counting the same",
        "probes). It writes this file and the raw numbers to `bench/results.json`.",
        "",
        f"Last run: {meta['date']}, Linux {meta['kernel']}, {meta['cpu']} ({meta['cores']} cores), "
        f"pybpftrace {meta['commit']}, bpfcc-tools {meta['versions']['bpfcc-tools']}, "
        f"{meta['versions']['bpftrace']}; {meta['repeats']} runs of each measurement (medians), "
        f"load average {meta['load_before']} before and {meta['load_after']} after; {meta['minutes']:.1f} minutes.",
        "",
        "**Read these as ratios.** A shared machine is noisy (see the load averages above): every",
        "figure below is a ratio between runs made side by side in this one run,",
        "never an absolute speed. Run it again before trusting a difference of a few percent.",
        "",
        "## Goals",
        "",
        *goals_section(found),
        "",
        "## Workloads",
        "",
        "Each workload waits for a line on stdin (the tracers attach first), times its work and exits.",
        "",
        "| workload | what it does | events in the work, by Python |",
        "| --- | --- | --- |",
    ]
    for workload in workloads:
        counts = ", ".join(
            f"{name}: {count:,}" if isinstance(count, int) else f"{name}: {count}"
            for name, count in workload["events"].items()
        )
        lines.append(f"| {workload['name']} | {_escape(workload['description'])} | {_escape(counts)} |")
    lines += ["", "## Results", "", *table(rows), "", "## Columns", "", COLUMNS.rstrip(), "", "## Notes", ""]
    lines += [f"- {note}" for note in dict.fromkeys(meta["notes"] + failures)]
    return "\n".join(lines) + "\n"


def replace_section(markdown: Path, heading: str, section: str) -> None:
    """Write section into the markdown file in place of the one under heading (up to the next
    `## `), at its end."""
    text = markdown.read_text() if markdown.exists() else ""
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
    markdown.write_text(text.rstrip("\n") + "\n\n" + section)
