"""Ctrl-C and SIGTERM during a trace: from the moment the user is told tracing runs they end it
cleanly; once it has stopped, they are held until what was traced is written."""

from __future__ import annotations

import signal
from typing import Optional

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The stopping signals of one trace: caught (the name of the first is `received`), then
    held, then given back as they were."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._handlers: dict[int, object] = {}

    def catch(self) -> None:
        self._handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOPPING_SIGNALS}

    def _on_signal(self, number: int, _frame) -> None:
        self.received = signal.Signals(number).name

    @staticmethod
    def hold() -> None:
        """Stopped: what was traced is written whatever signals come (an impatient second
        Ctrl-C, a supervisor's SIGTERM). Held, not merely handled: a signal pending makes the
        kernel refuse a BPF program it is checking (EAGAIN), and profile loads one at the end
        to read the stacks still waiting."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING_SIGNALS)

    def release(self) -> None:
        """Signals as they were before tracing began; those that came while the output was
        written (tracing had stopped already) are dropped."""
        if not self._handlers:
            return
        while signal.sigtimedwait(STOPPING_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING_SIGNALS)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
