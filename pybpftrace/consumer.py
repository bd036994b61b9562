"""What a command does with a trace: its events as they come, the processes that exit, the
end of the trace (Consumer), and what the end-of-run line reports (Summary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .events import Process

if TYPE_CHECKING:
    from .session import Session


@dataclass
class Summary:
    """What the end-of-run line reports."""

    events: int = 0  # handled by the programs
    lost: int = 0  # handled but dropped, not counted anywhere (the notes say why)
    seconds: float = 0.0
    ended_by: str = ""
    processes: int = 0
    threads: Optional[int] = None  # None where the events were counted in the kernel
    unit: str = "events"  # what the programs handle: events, samples
    notes: list[str] = field(default_factory=list)  # what could not be kept or is missing, and why

    def line(self) -> str:
        processes = f"{self.processes} processes, " if self.processes > 1 else ""
        threads = f"{self.threads} threads, " if self.threads is not None else ""
        notes = f" [{'; '.join(self.notes)}]" if self.notes else ""
        return (
            f"pybpftrace: {self.events} {self.unit}, {self.lost} lost{notes}, {processes}{threads}"
            f"{self.seconds:.2f} s ({self.ended_by})"
        )


class Consumer:
    """What a command does with its events. `interval`: seconds between on_interval calls;
    writes_stdout: whether it writes to stdout while tracing (then no status line goes to a
    terminal that shows both); unit: what its programs' records are, in the status line and
    the summary."""

    interval: Optional[float] = None
    writes_stdout = True
    unit = "events"
    copies_records = False  # it takes the events ring's records as they lie there (feed_copied)
    screen = False  # it draws a screen on the terminal: nothing goes to stderr while it runs

    def __init__(self, session: "Session"):
        self.session = session
        self.threads: Optional[set[int]] = set()  # None where the kernel aggregates

    def feed(self, records: list[tuple]) -> None:
        """A batch of records from the events ring buffer, in order."""

    def feed_copied(self, piece: memoryview) -> None:
        """With copies_records, instead of feed: records as they lie in the events ring (a batch
        in one or two pieces), to be copied before the ring is read again."""

    def catch_up(self) -> bool:
        """Work left from feeding (records copied, not yet handled), a slice at a time between
        reads of the ring: whether some is still left."""
        return False

    def on_exits(self, processes: set[Process]) -> None:
        """These processes have exited and their events are all fed: take what is needed of
        theirs (from the kernel's maps, from the names) before their names go."""

    def thread_count(self) -> Optional[int]:
        """The threads seen, for the summary line (None where the kernel aggregates)."""
        return None if self.threads is None else len(self.threads)

    def on_interval(self) -> bool:
        """Called every `interval` seconds; True ends the trace."""
        return False

    def finish(self, summary: Summary) -> None:
        """The trace has ended; the program's maps can still be read."""

    def writing(self) -> str:
        """What it is writing, in a few words, for the status line."""
        return ""

    def close(self) -> None:
        """Whatever happened: give back what the consumer holds (a terminal, say)."""
