"""`pybpftrace profile`: where the targets' threads spend their CPU time, from their Python
stacks, read by the kernel out of the interpreter's memory at each tick of a sampling clock.
Works on every CPython the walker knows (3.7 to 3.15), with or without probes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from ..async_stacks import JoinCounts, TaskJoin, task_reader
from ..events import (
    COUNTER_SHORT_WAITS,
    COUNTER_SHORT_WAITS_NS,
    COUNTER_SWITCHES_UNSEEN,
    COUNTER_SWITCHES_UNSEEN_NS,
    COUNTER_UNTRACKED_THREADS,
    SAMPLE_CUT_SHORT,
    SAMPLE_DUMP,
    SAMPLE_NO_THREAD_STATE,
    SAMPLE_TRUNCATED,
    SAMPLE_UNREADABLE,
    Process,
)
from ..namespaces import in_host_tids
from ..program import ProgramSpec
from ..formats.options import Output, Outputs
from ..render import TREE_WEIGHTS, weighted_stacks
from ..errors import NotFound
from ..samples import FrameNames, Sample, SampleCounts, call_trees, unpack
from ..sampling import DEFAULT_RATE, WITHOUT_GIL, Sampling
from ..consumer import Consumer, Summary
from ..session import Session, TraceOptions, run_tool
from ..stacks import weighted_paths

SPEC = ProgramSpec("profile.bpf.c", (), walker=True, continuations=(
    ("walk_programs", "walk_on_tick", "perf_event"),
    ("walk_tracepoint_programs", "walk_on_tracepoint", "tracepoint"),  # with off-CPU waits
), losses=(WITHOUT_GIL,))


DEFAULT_MIN_BLOCK = 0.001  # seconds
ASYNC_LOOK = 0.25  # seconds between looks at whether a snapshot of the tasks is due (--async)


@dataclass
class ProfileOptions:
    trace: TraceOptions = field(default_factory=TraceOptions)
    outputs: Outputs = field(default_factory=lambda: Outputs([Output("folded")]))
    rate: int = DEFAULT_RATE
    per_thread: bool = False
    lines: bool = False
    weighing: str = "cpu"  # samples.WEIGHINGS: cpu, idle, off-cpu, wall
    min_block: float = DEFAULT_MIN_BLOCK
    gil_only: bool = False  # only the samples of threads holding the GIL (--gil)
    async_tasks: bool = False  # samples in asyncio tasks joined to their awaiters (--async)

    @property
    def weight(self) -> str:
        """How the call trees are weighed (render.TREE_WEIGHTS)."""
        return self.weighing if self.weighing in ("off-cpu", "wall") else "samples"


class Profile(Consumer):
    """Counts the sampled stacks; at the end, writes them in each format asked for."""

    def __init__(self, session: Session, options: ProfileOptions):
        super().__init__(session)
        self.threads = None
        self._options = options
        self.counts = SampleCounts(lines=options.lines, gils=session.walker.gils)
        self.writes_stdout = any(output.path is None for output in options.outputs.items)
        self.unit = "samples" if options.weighing == "cpu" else "stacks"  # waits too
        self._tasks: Optional[TaskJoin] = None
        if options.async_tasks:
            walker = session.walker
            read = task_reader(walker.registered.get, session.sampling.qualnames)
            self._tasks = TaskJoin(read, session.codes, options.lines)
            self.interval = ASYNC_LOOK  # to see whether a snapshot is due

    def feed(self, records: list[bytes]) -> None:
        if self._tasks is None:
            self.counts.add(records)
            return
        self._tasks.hold(records)
        if self._tasks.due():
            self.counts.add_samples(self._tasks.release())

    def on_interval(self) -> bool:
        if self._tasks is not None and self._tasks.due():
            self.counts.add_samples(self._tasks.release())
        return False

    def on_exits(self, processes: set[Process]) -> None:
        """Their samples held are joined now, with the last snapshot of their tasks."""
        if self._tasks is not None:
            self.counts.add_samples(self._tasks.release(gone={pid for pid, _ in processes}))

    def thread_count(self) -> int:
        return len(self.counts.threads)

    def finish(self, summary: Summary) -> None:
        if self._tasks is not None:  # the last held, with snapshots read now
            self.counts.add_samples(self._tasks.release())
        if self._options.weighing != "cpu":
            self._add_waits_at_end()
        summary.unit = self.unit
        summary.processes = max(summary.processes, len(self.counts.processes))
        names = FrameNames(self.session.codes, self._options.lines)
        trees = call_trees(self.counts, names, self._options.weighing, self._options.rate)
        summary.notes += loss_notes(self.counts, names)
        if self._options.weighing != "cpu":
            summary.notes += wait_notes(self.session, self.counts, self._options)
        meta = self.session.meta(summary)
        if self._tasks is not None:
            notes = self._tasks.counts.notes()
            summary.notes += notes
            meta.notes += notes
        outputs = self._options.outputs
        outputs.write_stacks(weighted_stacks(trees, self._options.weight, self._options.per_thread, meta=meta,
                                             thread_names=self.session.thread_name))
        for output in outputs.own():  # --json
            text = output.text()
            joins = self._tasks.counts if self._tasks is not None else None
            text.write(json.dumps(stacks_json(trees, self._options, joins)) + "\n")
            text.flush()

    def writing(self) -> str:
        return ", ".join(f"{output.describe()} at the end" for output in self._options.outputs.items)

    def _add_waits_at_end(self) -> None:
        """The waits still going on as tracing stopped: the stacks their threads wait in, read
        as dump reads them (they are not running, so the stacks stay put)."""
        session = self.session
        waits = session.walker.waits_at_end(session.stopped)
        stacks: dict[int, Sample] = {}
        for pid in {pid for pid, waited, _, _, preempted, _ in waits.values() if waited and not preempted}:
            records: list[bytes] = []
            try:
                session.walker.walk_every_thread(pid, lambda: session.drain(records.extend))
            except NotFound:
                continue  # it exited: its waits are counted as unwalked
            dumped = [sample for sample in map(unpack, records) if sample.kind == SAMPLE_DUMP]
            stacks.update({sample.tid: sample for sample in in_host_tids(pid, dumped) if sample.tid})
        self.counts.add_waits(waits, stacks)


def stacks_json(trees, options: ProfileOptions, joins: Optional[JoinCounts] = None) -> dict:
    """{"rate", "weighing", "unit", "stacks": [{"pid", "tid", "frames": [{"function", "file",
    "line"}], "weight"}]}, frames outermost first; weights in samples or nanoseconds. With
    --async, "async": {"joined", "not_joined": {why: samples}, "chains_stopped": {why: samples}}."""
    stacks = []
    weight, unit = TREE_WEIGHTS[options.weight]
    for tree in trees:
        for path, value in weighted_paths(tree.root, weight):
            stacks.append({
                "pid": tree.pid, "tid": tree.tid, "weight": value,
                "frames": [{"function": f.function, "file": f.file or None, "line": f.line or None} for f in path],
            })
    result = {"rate": options.rate, "weighing": options.weighing, "unit": unit.unit, "lines": options.lines,
              "stacks": stacks}
    if joins is not None:
        result["async"] = joins.as_json()
    return result


def wait_notes(session: Session, counts: SampleCounts, options: ProfileOptions) -> list[str]:
    """What the off-CPU time leaves out."""
    notes = []
    short = session.counter(COUNTER_SHORT_WAITS)
    if short:
        seconds = session.counter(COUNTER_SHORT_WAITS_NS) / 1e9
        notes.append(f"{short} waits shorter than --min-block {options.min_block * 1e3:g} ms ({seconds:.3f} s), "
                     "their stacks not read")
    unseen = session.counter(COUNTER_SWITCHES_UNSEEN)
    if unseen:
        seconds = session.counter(COUNTER_SWITCHES_UNSEEN_NS) / 1e9
        notes.append(f"{unseen} switches of traced threads the kernel did not report (up to {seconds:.3f} s "
                     "of their time is on a CPU or off it, which is not known)")
    untracked = session.counter(COUNTER_UNTRACKED_THREADS)
    if untracked:
        notes.append(f"{untracked} times a thread's waits could not be tracked (the off_cpu map was full)")
    if counts.unpaired_ns:
        notes.append(f"{counts.unpaired_ns / 1e9:.3f} s back from preemptions whose stacks were lost")
    if counts.unwalked_ns:
        notes.append(f"{counts.unwalked_ns / 1e9:.3f} s of waits in threads that exited before their stacks were read")
    return notes


def loss_notes(counts: SampleCounts, names: FrameNames) -> list[str]:
    """What the samples could not show, each said once."""
    notes = []
    flagged = counts.flagged
    if flagged[SAMPLE_TRUNCATED]:
        notes.append(f"{flagged[SAMPLE_TRUNCATED]} samples deeper than the walker goes ([truncated])")
    if flagged[SAMPLE_CUT_SHORT]:
        notes.append(f"{flagged[SAMPLE_CUT_SHORT]} samples whose walk ran out of tail calls ([walk cut short])")
    if flagged[SAMPLE_UNREADABLE]:
        notes.append(f"{flagged[SAMPLE_UNREADABLE]} samples with an unreadable frame")
    if flagged[SAMPLE_NO_THREAD_STATE]:
        notes.append(f"{flagged[SAMPLE_NO_THREAD_STATE]} samples of threads with no Python thread state")
    if names.unannounced:
        notes.append(f"{names.unannounced} frames whose code object was never announced (the codes ring was full)")
    if names.lines_unknown:
        notes.append(f"{names.lines_unknown} frames whose line is unknown (line table larger than the kernel copies)")
    return notes


def run(options: ProfileOptions) -> int:
    off_cpu = options.weighing != "cpu"
    rate = None if options.weighing == "off-cpu" else options.rate
    sampling = Sampling(rate=rate, linetables=options.lines, off_cpu=off_cpu, min_block=options.min_block,
                        gil_only=options.gil_only, async_tasks=options.async_tasks)
    try:
        return run_tool("profile", SPEC, None, options.trace, lambda session: Profile(session, options),
                        sampling=sampling)
    finally:
        options.outputs.close()
