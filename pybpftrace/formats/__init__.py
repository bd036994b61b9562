"""Output formats: a command's own text (or JSON lines), folded stacks, an interactive SVG flame
graph, speedscope, Chrome trace events (Perfetto) and pprof, each in its own module, all
written from format-neutral data (model.py): `Stacks`, weighted stacks whose frames keep
function, file and line apart, with a weight unit and what was traced; and `Timeline`, the
exact streamed trace as timed spans per thread.

How a command offers them (`--format`, repeatable `-o FILE` choosing by extension, `--icicle`),
in cli.py, with one decorator under @tracing_command:

    @tracing_command
    @output_options("svg", "speedscope", "pprof", default="folded")    # options.py
    def profile(trace, outputs, json_output, ...):                      # `outputs` replaces `output`

and, in the tool, one call once the trace is done:

    outputs.write_stacks(render.weighted_stacks(trees, "samples", per_thread, view, session.meta(summary)))

(a weight is a row of render.TREE_WEIGHTS: how to read a call tree's node, and its model.Weight:
unit, pprof sample type, words). A streamed trace calls `outputs.write_timeline(timeline)` with
the spans stacks.Spans rebuilt. The command's own text output (its default format, or "json"
with --json) stays the command's: `outputs.own()` lists the outputs it writes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .model import Stacks, Timeline

STACKS, TIMELINE, OWN = "stacks", "timeline", "own"


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]  # how -o FILE names it
    takes: tuple[str, ...]  # STACKS, TIMELINE or OWN (the command's own text)
    opens_with: str  # for --help and the README


FORMATS = {
    format.name: format
    for format in (
        Format("text", (".txt",), (OWN,), "any pager"),
        Format("json", (".jsonl",), (OWN,), "jq; one JSON object a line"),
        Format("folded", (".folded",), (STACKS,), "flamegraph.pl, inferno, speedscope"),
        Format("svg", (".svg",), (STACKS,), "a web browser"),
        Format("speedscope", (".speedscope.json",), (STACKS, TIMELINE), "speedscope (speedscope.app, or `npx speedscope FILE`)"),
        Format("chrome", (".trace.json", ".chrome.json"), (TIMELINE,), "Perfetto (ui.perfetto.dev) or chrome://tracing"),
        Format("pprof", (".pb.gz", ".pprof"), (STACKS,), "go tool pprof, Pyroscope, Parca"),
    )
}


def format_for(path: str) -> Optional[str]:
    """The format an output file's name asks for, if any (the longest extension wins)."""
    matches = [(len(ext), name) for name, f in FORMATS.items() for ext in f.extensions if path.endswith(ext)]
    return max(matches)[1] if matches else None


def _writers() -> dict[tuple[str, str], Callable]:
    from . import chrome, flamegraph, folded, pprof, speedscope

    return {
        ("folded", STACKS): lambda data, out, options: folded.write(data, out),
        ("svg", STACKS): lambda data, out, options: flamegraph.write(data, out, icicle=options.get("icicle", False)),
        ("speedscope", STACKS): lambda data, out, options: speedscope.write(data, out),
        ("speedscope", TIMELINE): lambda data, out, options: speedscope.write(data, out),
        ("chrome", TIMELINE): lambda data, out, options: chrome.write(data, out),
        ("pprof", STACKS): lambda data, out, options: pprof.write(data, out, options.get("also", ())),
    }


def write(format: str, data: Stacks | Timeline, out, **options) -> None:
    """Write data (Stacks or Timeline) in format to the binary stream out. Options: icicle
    (svg), also (pprof: the same stacks weighed other ways, as further sample types)."""
    kind = TIMELINE if isinstance(data, Timeline) else STACKS
    _writers()[(format, kind)](data, out, options)


def takes(format: str, kind: str) -> bool:
    return kind in FORMATS[format].takes
