"""`pybpftrace profile`: where the targets' threads spend their CPU time, from their Python
stacks, read by the kernel out of the interpreter's memory at each tick of a sampling clock.
Works on every CPython the walker knows (3.7 to 3.15), with or without probes."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Optional, TextIO

from ..events import SAMPLE_CUT_SHORT, SAMPLE_NO_THREAD_STATE, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE
from ..program import ProgramSpec
from ..render import folded
from ..samples import FrameNames, SampleCounts, call_trees
from ..sampling import DEFAULT_RATE, Sampling
from ..session import Consumer, Session, Summary, TraceOptions, run_tool
from ..stacks import weighted_paths

SPEC = ProgramSpec("profile.bpf.c", (), walker=True, continuation="walk_on_tick")


@dataclass
class ProfileOptions:
    trace: TraceOptions = field(default_factory=TraceOptions)
    output: Optional[TextIO] = None
    json: bool = False
    rate: int = DEFAULT_RATE
    per_thread: bool = False
    lines: bool = False


class Profile(Consumer):
    """Counts the sampled stacks; at the end, writes them as folded stacks (or JSON)."""

    def __init__(self, session: Session, options: ProfileOptions, out: TextIO):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._out = out
        self.counts = SampleCounts(lines=options.lines)

    def feed(self, records: list[bytes]) -> None:
        self.counts.add(records)

    def finish(self, summary: Summary) -> None:
        summary.unit = "samples"
        summary.threads = len(self.counts.threads)
        summary.processes = max(summary.processes, len(self.counts.processes))
        names = FrameNames(self.session.codes, self._options.lines)
        trees = call_trees(self.counts, names)
        if self._options.json:
            self._out.write(json.dumps(stacks_json(trees, self._options)) + "\n")
        else:
            lines = folded(trees, "samples", self._options.per_thread)
            self._out.write("".join(line + "\n" for line in lines))
        self._out.flush()
        summary.notes += loss_notes(self.counts, names)


def stacks_json(trees, options: ProfileOptions) -> dict:
    """{"rate", "stacks": [{"pid", "tid", "frames": [{"function", "file", "line"}], "samples"}]},
    frames outermost first."""
    stacks = []
    for tid, tree in trees.items():
        for path, count in weighted_paths(tree.root, lambda node: node.samples):
            stacks.append({
                "pid": tree.pid, "tid": tid, "samples": count,
                "frames": [{"function": f.function, "file": f.file or None, "line": f.line or None} for f in path],
            })
    return {"rate": options.rate, "lines": options.lines, "stacks": stacks}


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
    out = options.output or sys.stdout
    sampling = Sampling(rate=options.rate, linetables=options.lines)
    return run_tool("profile", SPEC, None, options.trace, lambda session: Profile(session, options, out),
                    sampling=sampling)
