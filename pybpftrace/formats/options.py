"""`--format`, `-o FILE` (repeatable: one trace, several files) and `--icicle` for a command,
as one click decorator, and the outputs they open, handed to the command as `outputs`."""

from __future__ import annotations

import errno
import functools
import io
import os
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Optional, Sequence, TextIO

import click

from ..errors import OutputFailed
from ..escaping import TerminalSafe
from ..output_files import OutputRefused, open_output
from . import FORMATS, OWN, STACKS, TIMELINE, format_for, takes, write
from .model import Stacks, Timeline


def flush_stdout_quietly() -> None:
    """After a closed pipe (`| head`), keep Python's exit from complaining about stdout."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def output_failed(name: str, error: OSError, output) -> OutputFailed:
    """The error that ends a trace whose output cannot be written (a full disk, say): what
    was written is kept; a closed pipe (`| head`) is a normal end."""
    failure = OutputFailed(f"cannot write to {name}: {error.strerror or error}")
    failure.closed = error.errno == errno.EPIPE
    failure.output = output
    return failure


class GuardedText:
    """A text stream (a file, or stdout) whose failing write or flush raises OutputFailed."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.name = getattr(stream, "name", "the output")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as error:
            raise output_failed(self.name, error, self) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise output_failed(self.name, error, self) from None

    def discard(self) -> None:
        """After a failure: drop what is still buffered, so that exiting does not try again."""
        if self._stream is sys.stdout:
            flush_stdout_quietly()
            return
        try:
            self._stream.close()
        except OSError:
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@dataclass
class Output:
    """One place to write one format: a file, opened before tracing starts (a trace that
    fails to start leaves no file it made: output_files.remove_unwritten), or standard output
    (path None)."""

    format: str
    path: Optional[str] = None
    _stream: Optional[BinaryIO] = None
    _text: Optional[TextIO] = None

    @property
    def stream(self) -> BinaryIO:
        if self._stream is None:
            self._stream = sys.stdout.buffer if self.path is None else opened(self.path)
        return self._stream

    def text(self) -> GuardedText:
        """The output as text, for the command's own lines."""
        if self._text is None:
            self._text = GuardedText(
                TerminalSafe(sys.stdout if self.path is None else io.TextIOWrapper(self.stream, encoding="utf-8")))
        return self._text

    def write_with(self, writer: Callable[[BinaryIO], None]) -> None:
        """writer(stream), then a flush; OutputFailed when either fails."""
        try:
            writer(self.stream)
            self.stream.flush()
        except OSError as error:
            raise output_failed(self.path or "stdout", error, self) from None

    def discard(self) -> None:
        """After a failure: drop what is still buffered, so that exiting does not try again."""
        if self.path is None:
            flush_stdout_quietly()
            return
        try:
            self.close()
        except OSError:
            pass

    def describe(self) -> str:
        return f"{self.format} to {self.path or 'stdout'}"

    def written(self) -> int:
        """Bytes written to the file so far."""
        if self._text is not None and self.path is not None:
            self._text.flush()
        try:
            return self._stream.tell() if self._stream is not None and self.path is not None else 0
        except OSError:  # a pipe (-o /dev/stdout)
            return 0

    def close(self) -> None:
        if self.path is None:
            try:
                sys.stdout.flush()
            except OSError:  # a closed pipe: what mattered was written, or said to have failed
                flush_stdout_quietly()
        elif self._stream is not None:
            (self._text or self._stream).close()


def opened(path: str) -> BinaryIO:
    """The file, open now (output_files: never through a planted link, never a FIFO or a
    device), or the bad argument it is."""
    try:
        return open_output(path)
    except OutputRefused as error:
        raise click.UsageError(str(error)) from None


@dataclass
class Outputs:
    items: list[Output] = field(default_factory=list)
    icicle: bool = False

    def formats(self) -> set[str]:
        return {output.format for output in self.items}

    def own(self) -> list[Output]:
        """The outputs in the command's own text (or JSON lines) format."""
        return [output for output in self.items if takes(output.format, OWN)]

    def taking(self, kind: str) -> list[Output]:
        return [output for output in self.items if takes(output.format, kind)]

    def write_stacks(self, stacks: Stacks, also: Sequence[Stacks] = ()) -> None:
        """Every output that takes weighted stacks; also: the same stacks weighed other ways
        (pprof keeps them as further sample types)."""
        for output in self.taking(STACKS):
            output.write_with(lambda stream: write(output.format, stacks, stream, icicle=self.icicle, also=also))

    def write_timeline(self, timeline: Timeline) -> None:
        for output in self.taking(TIMELINE):
            output.write_with(lambda stream: write(output.format, timeline, stream))

    def describe(self) -> str:
        return ", ".join(output.describe() for output in self.items)

    def close(self) -> None:
        for output in self.items:
            output.close()


def open_outputs(paths: Sequence[str], format: Optional[str], default: str, offered: Sequence[str],
                 icicle: bool = False) -> Outputs:
    """Each -o FILE in the format its name asks for (or `format`, or the command's default),
    opened now, so that a bad path fails before tracing rather than after."""
    if format is not None and len(paths) > 1:
        raise click.UsageError("--format goes with one output at most: with several -o, each file's "
                               "extension names its format")
    chosen = []
    for path in paths or [None]:
        asked = format_for(path) if path else None
        name = format or (None if asked == "text" else asked) or default  # text: the command's own
        if name not in offered:
            raise click.UsageError(f"{path or 'stdout'}: this command writes {', '.join(offered)}, not {name}")
        chosen.append((name, path))
    return Outputs([Output(name, path, None if path is None else opened(path)) for name, path in chosen], icicle)


def _help(offered: Sequence[str], default: str) -> str:
    extensions = "; ".join(f"{name}: {', '.join(FORMATS[name].extensions)}" for name in offered)
    return f"Output format (default: from -o FILE's extension, else {default}). Extensions: {extensions}."


def output_options(*formats: str, default: str = "text") -> Callable:
    """--format, -o (repeatable), --icicle where svg is offered, for a tracing command whose
    own output is `default`; the function gets `outputs` (an Outputs) instead of them. --json
    makes the command's own output JSON lines."""
    offered = list(dict.fromkeys([default, *(["json"] if default == "text" else []), *formats]))

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def command(output_paths, output_format, icicle=False, **options):
            own = "json" if options.get("json_output") else default
            options["outputs"] = open_outputs(output_paths, output_format, own, offered, icicle)
            return function(**options)

        command = click.option("-o", "--output", "output_paths", multiple=True, metavar="FILE",
                               help="Write to FILE instead of stdout; repeat for several files from one trace.")(command)
        command = click.option("--format", "output_format", type=click.Choice(offered), help=_help(offered, default))(command)
        if "svg" in formats:
            command = click.option("--icicle", is_flag=True, help="SVG: an icicle graph (stacks grow downwards).")(command)
        return command

    return decorate
