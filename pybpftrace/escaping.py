"""Where text a traced process controls (its function, file, thread and module names, its
command line, the paths it maps, its audit events) becomes text for a terminal or a line-based
file. The process is untrusted: nothing of it may move the cursor, retitle the terminal, write
the clipboard, reorder a line (bidirectional controls) or start a line of its own.

Files meant for programs (JSON, speedscope, pprof, Perfetto) keep the exact strings."""

from __future__ import annotations

import re
from typing import TextIO

# C0 (with line breaks and tabs), DEL, C1; bidirectional controls and marks; noncharacters
# and lone surrogates (a name decoded with surrogateescape), which no XML may hold.
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # \t and \n are the output's own
_UNSAFE_IN_FOLDED = re.compile(f"[\x00-\x1f{_OTHERS};\\\\]")


def _escaped(match: re.Match) -> str:
    """As repr escapes it (`\\x1b`, `\\n`, `\\udcff`), and in its `\\u` form what repr
    leaves as it is (bidirectional controls are printable to it)."""
    text = repr(match.group())[1:-1]
    if len(text) == 1:
        code = ord(text)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return text


def shown(text: str) -> str:
    """A target's text for a terminal: each control escaped as repr escapes it (`\\x1b`,
    `\\n`, `\\u202e`), everything else as it is."""
    return _UNSAFE.sub(_escaped, text) if _UNSAFE.search(text) else text


def shown_lines(text: str) -> str:
    """Output made of lines, escaped as shown() escapes a field but for its line breaks and
    tabs: the last guard before a text stream."""
    return _UNSAFE_IN_TEXT.sub(_escaped, text) if _UNSAFE_IN_TEXT.search(text) else text


def folded_label(text: str) -> str:
    """A frame's label in folded stacks, escaped reversibly (as a Python string literal's
    escapes read back): `\\` as `\\\\`, the separator `;` as `\\x3b`, controls as shown()."""
    if not _UNSAFE_IN_FOLDED.search(text):
        return text
    return _UNSAFE_IN_FOLDED.sub(lambda match: "\\x3b" if match.group() == ";" else
                                 "\\\\" if match.group() == "\\" else _escaped(match), text)


class TerminalSafe:
    """A text stream that writes nothing a target could have put there raw (shown_lines):
    the output of a command's own text format."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(shown_lines(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
