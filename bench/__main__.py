"""`make bench`: every workload under every interpreter, untraced and beside each tracer, a
few times round-robin; then BENCHMARKS.md and bench/results.json.

    python -m bench [--repeats N] [--interpreter 3.11] [--workload fib]
    python -m bench --sampling only|none    # only the sampling profilers' comparison, or none of it
    python -m bench --from-json bench/results.json    # the report again, measuring nothing

$PYBPFTRACE="CMD" measures another pybpftrace command (say, another checkout's
`.venv/bin/python -m pybpftrace`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Union

from . import sampling
from .measure import Run, count_events, measure
from .report import UNTRACED, Cell, Row, document, goals, summarize
from .targets import INTERPRETERS, WORKLOADS, Interpreter, Workload
from .tracers import REPO, TRACERS, Tracer

RETRY_PAUSE = 3.0  # a tracer that failed to attach tries again after this...
RETRIES = 2  # ...this many times
NOTES = [
    "On CPython 3.11, `function__entry` fires only while the line probe's semaphore is raised "
    "(gh-98894). pybpftrace and the floor raise it (a uprobe carrying it on `Py_FatalError`, "
    "never run); bcc's tools and bpftrace do not, so there they see returns only (ucalls, which "
    "probes entries only, sees nothing). Their slowdown, cost and losses are left out there "
    "rather than compared: they do not do the job, and the interpreter runs its fast path.",
    "On 3.15 the chroot's process is traced by PID from outside. `bpftrace -p PID` finds no "
    "probes in a chrooted process (it looks the binary up through /proc/PID/root), so there the "
    "script probes the chroot's binary by its path from the host, for every process running it, "
    "with a `/pid == PID/` predicate.",
    "`3.15 (sid, host root)` is the same sid interpreter started from the host's root through "
    "the chroot's own dynamic loader and libraries (`ld-linux-x86-64.so.2 --library-path ...`), "
    "because bcc's tools cannot attach to a chrooted process (see below); it runs the "
    "call-heavy workload only, to keep the run near ten minutes.",
    "uflow and ucalls are Python programs: they run with PYTHONUNBUFFERED=1 so that their "
    "`Tracing` line shows as soon as it is printed; uflow then writes a line per event, as it "
    "does on a terminal. A peer still running half a second after the target has exited "
    "(they do not watch it) is sent SIGINT, on which ucalls and bpftrace print their counts.",
    "Each tracer's output (stack's file, the folded stacks, the peers' lines) goes to a scratch "
    "directory deleted after each run.",
]
# Failures that trying again cannot mend.
FINAL_FAILURES = ("Failed to enable USDT probe",)
# Failures seen in runs, and what they mean: said once in the notes when they happen.
KNOWN_FAILURES = {
    "Failed to enable USDT probe": "bcc's tools (uflow, ucalls) do not attach to a chrooted "
    "process: bcc looks for the probes through /proc/PID/root with the path the host sees, "
    "which does not exist in the chroot (`Failed to enable USDT probe`).",
    "Invalid argument": "`Invalid argument` from bcc's perf_event_open: the kernel refuses a "
    "uprobe where another tracer holds one with a different `ref_ctr_offset` (dmesg: "
    "`ref_ctr_offset mismatch`). pybpftrace and bpftrace let the kernel raise semaphores, bcc "
    "writes them itself, so bcc's tools cannot attach while another tracer traces the same "
    "binary, such as another job's tests on this machine.",
    "still running": "A pybpftrace mode still busy 20 s after its target has exited (a healthy "
    "one needs a second or two to drain) is stopped with SIGINT and reported failed, and one "
    "whose RSS passes 1 GiB meanwhile is killed: its figures would say nothing, and the machine "
    "is shared.",
}
KNOWN_FAILURES["its RSS passed"] = KNOWN_FAILURES["still running"]


def main(argv: list[str]) -> int:
    options = parse(argv)
    if options.from_json:
        return rewrite_report(options.from_json, options.markdown)
    if os.geteuid() != 0:
        print("bench: needs root to load BPF programs: run `sudo make bench`", file=sys.stderr)
        return 1
    # SIGTERM unwinds like Ctrl-C, so each run's cleanup stops its target and tracer. SIGINT
    # gets a handler too: started in the background, the harness inherits SIGINT ignored, and
    # so would the peers it stops with SIGINT; a handler is reset to the default by exec.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.default_int_handler)
    if options.sampling == "only":
        return bench_sampling(options)
    started = time.monotonic()
    meta = machine(options.repeats)
    cells: list[Cell] = []
    workloads: list[dict] = []
    rows: list[Row] = []
    for interpreter in chosen(INTERPRETERS, options.interpreter, lambda i: i.name):
        for workload in chosen(WORKLOADS, options.workload, lambda w: w.name):
            if not interpreter.runs(workload):
                continue
            found, counts = bench_workload(interpreter, workload, options.repeats)
            cells += found
            workloads.append({"interpreter": interpreter.name, "workload": workload.name, "counts": counts})
            rows += summarize(found, counts if isinstance(counts, dict) else None)
    meta["load_after"] = load_average()
    meta["minutes"] = (time.monotonic() - started) / 60
    meta["harness_peak_rss_mib"] = own_peak_rss_mib()
    meta["notes"] = NOTES + [
        "Peak RSS comes from each tracer's rusage, which Linux starts from the high-water mark of "
        f"the process that started it: this harness's, {meta['harness_peak_rss_mib']:.0f} MiB. "
        "A figure that low may be lower in truth."
    ]
    verdicts = goals(rows)
    write_results(options.json, meta, workloads, cells, rows, verdicts)
    options.markdown.write_text(document(meta, workload_table(workloads), rows, verdicts, failure_notes(cells)))
    print(f"bench: wrote {options.markdown} and {options.json} in {meta['minutes']:.1f} minutes", file=sys.stderr)
    return bench_sampling(options) if options.sampling == "both" else 0


def bench_sampling(options: argparse.Namespace) -> int:
    """The sampling profilers' comparison: its section of BENCHMARKS.md (replaced, the rest
    kept) and its key in results.json."""
    why = sampling.available()
    if why:
        print(f"bench: no sampling comparison: {why}", file=sys.stderr)
        return 1
    started = time.monotonic()
    rows = sampling.bench(options.repeats, say)
    minutes = (time.monotonic() - started) / 60
    section = sampling.document(rows, options.repeats, minutes, load_average())
    text = options.markdown.read_text() if options.markdown.exists() else ""
    cut = text.find(sampling.HEADING)
    options.markdown.write_text((text[:cut] if cut >= 0 else text).rstrip("\n") + "\n\n" + section)
    data = json.loads(options.json.read_text()) if options.json.exists() else {}
    data["sampling"] = {"minutes": minutes, "rows": [row.to_json() for row in rows], "markdown": section}
    options.json.write_text(json.dumps(data, indent=1) + "\n")
    print(f"bench: wrote the sampling comparison in {minutes:.1f} minutes", file=sys.stderr)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--interpreter", action="append", help="only interpreters whose name starts so")
    parser.add_argument("--workload", action="append", help="only these workloads")
    parser.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--sampling", choices=("both", "only", "none"), default="both",
                        help="the sampling profilers' comparison too (default), only it, or not")
    parser.add_argument("--from-json", type=Path, metavar="RESULTS",
                        help="measure nothing: write the markdown again from a results.json")
    return parser.parse_args(argv)


def chosen(items, wanted: Optional[list[str]], name) -> list:
    return [item for item in items if not wanted or any(name(item).startswith(w) for w in wanted)]


def bench_workload(interpreter: Interpreter, workload: Workload, repeats: int) -> tuple[list[Cell], Union[dict, str]]:
    """Every tracer's cell for one workload, and its event counts (or why there are none)."""
    cells = {name: Cell(interpreter.name, workload.name, name, kind)
             for name, kind in [(UNTRACED, "untraced"), *((t.name, t.kind) for t in TRACERS)]}
    missing = interpreter.missing()
    if missing:
        for cell in cells.values():
            cell.status, cell.reason = "skipped", missing
        return list(cells.values()), f"skipped: {missing}"
    interpreter.prepare()
    for tracer in TRACERS:
        why = tracer.available(interpreter)
        if why:
            cells[tracer.name].status, cells[tracer.name].reason = "not available", why
    say(f"{interpreter.name} {workload.name}: counting events")
    counts, why = count_events(interpreter, workload)
    order: list[Optional[Tracer]] = [None, *(t for t in TRACERS if cells[t.name].status == "measured")]
    failed: set[str] = set()
    for repeat in range(repeats):
        # Round-robin, starting one further each time, so that a drift of the machine's
        # load does not always fall on the same tracer.
        for tracer in order[repeat % len(order):] + order[:repeat % len(order)]:
            name = tracer.name if tracer else UNTRACED
            if name in failed:
                continue  # failing again would only cost time
            run = measure_once(interpreter, workload, tracer)
            cells[name].runs.append(run.to_json())
            if run.error:
                failed.add(name)
            say(f"{interpreter.name} {workload.name} {repeat + 1}/{repeats} {name}: " + (run.error or f"{run.seconds:.3f} s"))
    return list(cells.values()), counts if counts else why


def measure_once(interpreter: Interpreter, workload: Workload, tracer: Optional[Tracer]) -> Run:
    """One run; a tracer that did not attach tries again (another job's tracer may have
    been in the way), and the first failure is kept if all fail."""
    run = measure(interpreter, workload, tracer)
    for _ in range(RETRIES):
        if not (run.error and run.error.startswith("did not attach")) or any(f in run.error for f in FINAL_FAILURES):
            break
        time.sleep(RETRY_PAUSE)
        retry = measure(interpreter, workload, tracer)
        run = retry if not retry.error else run
        if not retry.error:
            break
    return run


STARTED = time.monotonic()


def say(message: str) -> None:
    elapsed = time.monotonic() - STARTED
    print(f"bench: {elapsed // 60:02.0f}:{elapsed % 60:02.0f} {message}", file=sys.stderr, flush=True)


def machine(repeats: int) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "commit": commit() if not os.environ.get("PYBPFTRACE") else f"from `{os.environ['PYBPFTRACE']}`",
        "repeats": repeats,
        "load_before": load_average(),
        "versions": versions(),
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "pybpftrace", "bpf", "bench")
    return head + (" with uncommitted changes" if changed else "")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def versions() -> dict:
    """The peers' versions, for the record."""
    return {
        "bpftrace": output_of(["bpftrace", "--version"]),
        "bpfcc-tools": output_of(["dpkg-query", "-W", "-f=${Version}", "bpfcc-tools"]),
    }


def output_of(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        return "not installed"
    return done.stdout.strip() if done.returncode == 0 else "not installed"


def own_peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def failure_notes(cells: list[Cell]) -> list[str]:
    """What the failures seen in these runs mean, each said once."""
    errors = " ".join(run.get("error", "") for cell in cells for run in cell.runs)
    return list(dict.fromkeys(note for marker, note in KNOWN_FAILURES.items() if marker in errors))


def workload_table(workloads: list[dict]) -> list[dict]:
    """One line per workload: its description and its event counts under each Python."""
    table = []
    for workload in WORKLOADS:
        events = {}
        for entry in workloads:
            if entry["workload"] == workload.name:
                counts = entry["counts"]
                events[entry["interpreter"]] = counts["work_events"] if isinstance(counts, dict) else counts
        if events:
            table.append({"name": workload.name, "description": workload.description, "events": events})
    return table


def rewrite_report(results: Path, markdown: Path) -> int:
    """BENCHMARKS.md again from the raw numbers of a run (after a change to the report)."""
    data = json.loads(results.read_text())
    cells = [Cell(**cell) for cell in data["cells"]]
    rows: list[Row] = []
    for entry in data["workloads"]:
        counts = entry["counts"] if isinstance(entry["counts"], dict) else None
        rows += summarize([c for c in cells if (c.interpreter, c.workload) == (entry["interpreter"], entry["workload"])], counts)
    text = document(data["meta"], workload_table(data["workloads"]), rows, goals(rows), failure_notes(cells))
    if "sampling" in data:
        text = text.rstrip("\n") + "\n\n" + data["sampling"]["markdown"]
    markdown.write_text(text)
    print(f"bench: wrote {markdown} from {results}", file=sys.stderr)
    return 0


def write_results(path: Path, meta: dict, workloads: list[dict], cells: list[Cell], rows: list[Row], verdicts) -> None:
    kept = json.loads(path.read_text()).get("sampling") if path.exists() else None
    data = {
        "meta": meta,
        "workloads": workloads,
        "cells": [cell.__dict__ for cell in cells],
        "rows": [row.__dict__ for row in rows],
        "goals": [goal.__dict__ for goal in verdicts],
    }
    if kept:
        data["sampling"] = kept
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
