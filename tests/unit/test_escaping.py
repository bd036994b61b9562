"""What a traced process names, as a terminal or a line-based file gets it (escaping.py)."""

import codecs
import re

from hypothesis import example, given, strategies as st

from pybpftrace.escaping import TerminalSafe, folded_label, shown, shown_lines

# Everything a terminal or a reader of lines could take for other than text.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]")


def unfolded(label: str) -> str:
    """A folded label read back, as the README says: its escapes are a Python string's."""
    return codecs.decode(label.encode("latin-1", "backslashreplace"), "unicode_escape")


def test_terminal_payloads_are_shown_as_escapes():
    assert shown("\x1b]0;TITLE\x07") == "\\x1b]0;TITLE\\x07"
    assert shown("\x1b]52;c;aGk=\x07") == "\\x1b]52;c;aGk=\\x07"
    assert shown("\x1b[2J") == "\\x1b[2J"
    assert shown("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert shown("\x9b2J \x9d0;x") == "\\x9b2J \\x9d0;x"  # C1 controls
    assert shown("txt.\u202eyp") == "txt.\\u202eyp"  # bidirectional override
    assert shown("nul\x00del\x7f") == "nul\\x00del\\x7f"
    assert shown("bad\udcff\ufffe") == "bad\\udcff\\ufffe"  # a surrogate escape, a noncharacter


def test_text_passes_as_it_is():
    for text in ["handle_request", "<module>", "/srv/app/server.py", "café", "日本語", "a;b", "C:\\x"]:
        assert shown(text) is text or shown(text) == text


@given(st.text())
@example("\x1b]0;x\x07\n\u202e")
def test_shown_leaves_no_control(text):
    assert not CONTROL.search(shown(text))


@given(st.text())
def test_lines_keep_their_breaks_and_tabs_only(text):
    out = shown_lines(text)
    assert not CONTROL.search(out.replace("\n", "").replace("\t", ""))
    assert out.count("\n") == text.count("\n")


def test_a_terminal_stream_escapes_what_it_writes():
    written = []

    class Sink:
        def write(self, text):
            written.append(text)
            return len(text)

    TerminalSafe(Sink()).write("f (\x1b[2J.py:1)\n")
    assert written == ["f (\\x1b[2J.py:1)\n"]


def test_folded_separators_are_escaped():
    assert folded_label("a;b") == "a\\x3bb"
    assert folded_label("forged 1\nmain;evil 99999") == "forged 1\\nmain\\x3bevil 99999"
    assert folded_label("back\\slash") == "back\\\\slash"
    assert folded_label("main (app.py:1)") == "main (app.py:1)"


@given(st.text())
@example("\\x3b;\\\\\n")
@example("\udcff\u202e日本")
def test_folded_labels_read_back_exactly(text):
    label = folded_label(text)
    assert ";" not in label and "\n" not in label and not CONTROL.search(label)
    assert unfolded(label) == text
