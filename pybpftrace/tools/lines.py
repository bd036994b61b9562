"""`pybpftrace lines`: the hot lines (runs per file:line, counted in the kernel), or with
--stream every line as it runs. Needs the line probe: CPython up to 3.11."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Optional, TextIO

from ..escaping import shown
from ..events import COUNTER_COUNTS_FULL, LINE_EVENT, Process
from ..program import Handler, Loss, ProgramSpec
from ..consumer import Consumer, Summary
from ..session import Session, TraceOptions, run_tool, signed_total

SPEC = ProgramSpec(
    "lines.bpf.c", (("line", Handler("on_line", 3)),), names_layout=True,
    losses=(Loss(COUNTER_COUNTS_FULL, "{n} lines not counted: the counts map ({counts}) was full", dropped=True),),
)


@dataclass
class LinesOptions:
    trace: TraceOptions
    output: Optional[TextIO] = None
    json: bool = False
    stream: bool = False
    top: int = 20
    filename: Optional[str] = None


class StreamedLines(Consumer):
    header = f"{'TIME(s)':>12} {'TID':>8}  LINE"

    def __init__(self, session: Session, options: LinesOptions, out: TextIO):
        super().__init__(session)
        self._options = options
        self._out = out
        if not options.json:
            out.write(self.header + "\n")

    def feed(self, records: list[tuple]) -> None:
        line_event = self.session.names.line_event
        filename = self._options.filename
        for record in records:
            event = line_event(record)
            self.threads.add(event.tid)
            if filename is not None and filename not in event.file:
                continue
            time = (event.timestamp - self.session.start) / 1e9
            if self._options.json:
                line = json.dumps({"time": round(time, 9), "pid": event.pid, "tid": event.tid,
                                   "file": event.file, "line": event.line, "function": event.function})
            else:
                line = f"{time:12.6f} {event.tid:>8}  {shown(event.file)}:{event.line} ({shown(event.function)})"
            self._out.write(line + "\n")
        self._out.flush()


class HotLines(Consumer):
    """Reads the kernel's counts at the end."""

    def __init__(self, session: Session, options: LinesOptions, out: TextIO):
        super().__init__(session)
        self.threads = None
        self._options = options
        self._out = out
        self._counts: Counter = Counter()  # (pid, file, line, function): runs

    def on_exits(self, processes: set[Process]) -> None:
        """Their counts are taken now, while their names are known."""
        self._take(processes)

    def _take(self, processes: Optional[set[Process]]) -> None:
        """The counts of these processes, which have exited, taken out of the kernel's map;
        None: of every process, at the end. Rows of the same line merge (two ids of one name:
        see common.h's name_id)."""
        names, table = self.session.names, self.session.program.table("counts")
        for key, value in list(table.items()):
            if processes is not None:
                if (key.pid, key.incarnation) not in processes:
                    continue
                del table[key]
            file, function = names.get(key.pid, key.incarnation, key.first, key.second)
            if self._options.filename is None or self._options.filename in file:
                self._counts[(key.pid, file, key.line, function)] += signed_total(value)

    def finish(self, summary: Summary) -> None:
        self._take(None)
        counts = [(count, *row) for row, count in self._counts.items()]
        counts.sort(key=lambda row: (-row[0], row[2], row[3]))
        top = counts[: self._options.top]
        if self._options.json:
            self._out.write(json.dumps({"lines": [
                {"count": count, "pid": pid, "file": file, "line": line, "function": function}
                for count, pid, file, line, function in top
            ]}) + "\n")
        else:
            self._out.write(f"{'COUNT':>10} {'PID':>8}  LINE\n")
            for count, pid, file, line, function in top:
                self._out.write(f"{count:>10} {pid:>8}  {file}:{line} ({function})\n")
        self._out.flush()


def run(options: LinesOptions) -> int:
    out = options.output or sys.stdout
    consumer = StreamedLines if options.stream else HotLines

    def configure(session: Session) -> None:
        streaming = session.program.table("streaming")
        streaming[streaming.Key(0)] = streaming.Leaf(int(options.stream))

    return run_tool("lines", SPEC, LINE_EVENT, options.trace, lambda s: consumer(s, options, out), configure)
