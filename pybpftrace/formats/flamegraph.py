"""An interactive flame graph, one SVG file that any browser opens: hover a frame for its
details, click to zoom into it, search names (highlighting the frames that match, and how
much of the weight they hold). Each frame's width is exactly its share of the total weight;
stacks grow upwards (a flame graph) or downwards (an icicle graph). The script and style that
make it interactive are flamegraph.js and flamegraph.css, beside this file."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from importlib import resources
from typing import BinaryIO, Optional, Union
from xml.sax.saxutils import escape as escape_markup, quoteattr

from ..escaping import shown
from .model import Frame, Stacks


def escape(text: str) -> str:
    """Any name as valid XML text: controls, noncharacters and lone surrogates, which XML
    cannot hold even as references, shown as escapes first."""
    return escape_markup(shown(text))


WIDTH = 1200  # of the drawing, in user units (px at 100%)
MARGIN = 10
FRAME_HEIGHT = 17
FONT_SIZE = 12
CHAR_WIDTH = FONT_SIZE * 0.6  # a monospace font's advance, as flamegraph.js assumes too
HEADER = 86  # title, what the widths weigh, the command, notes; the search field
FOOTER = 30  # the details of the frame under the pointer

Key = Union[Frame, str]  # a frame, or a thread's label at the root of its stacks


@dataclass
class _Node:
    label: str
    file: str = ""
    weight: int = 0  # self and callees
    children: dict[Key, "_Node"] = field(default_factory=dict)


def _tree(stacks: Stacks) -> _Node:
    root = _Node("all")
    for tid, per_stack in stacks.stacks.items():
        thread = stacks.threads[tid]
        for stack, value in per_stack.items():
            if value <= 0:
                continue
            node = root
            node.weight += value
            keys: list[Key] = [thread.label()] if stacks.per_thread else []
            for key in keys + list(stack):
                child = node.children.get(key)
                if child is None:
                    child = node.children[key] = (
                        _Node(key.label(), key.file) if isinstance(key, Frame) else _Node(key)
                    )
                child.weight += value
                node = child
    return root


def fitted(label: str, width: float) -> str:
    """As much of the label as fits in width: whole, its function's name alone, that name cut
    with `..`, or nothing."""
    fits = int((width - 6) / CHAR_WIDTH)
    if fits >= len(label):
        return label
    name = label.split(" (", 1)[0]
    if fits >= len(name):
        return name
    return name[: fits - 2] + ".." if fits >= 3 else ""


def color(node: _Node) -> str:
    """Warm colours, the same for a function wherever it appears: hue by its file, shade by
    its name."""
    if not node.file:
        return "rgb(220,220,210)"
    hue = zlib.crc32(node.file.encode()) % 50
    shade = zlib.crc32(node.label.encode()) % 100 / 100
    return f"rgb({205 + round(50 * shade)},{60 + hue * 3},{30 + round(40 * shade)})"


class _Drawing:
    def __init__(self, stacks: Stacks, total: int, icicle: bool, depth: int):
        self.stacks = stacks
        self.total = total
        self.icicle = icicle
        self.height = HEADER + (depth + 1) * FRAME_HEIGHT + FOOTER
        self.scale = (WIDTH - 2 * MARGIN) / total if total else 0.0
        self.parts: list[str] = []

    def y(self, depth: int) -> float:
        if self.icicle:
            return HEADER + depth * FRAME_HEIGHT
        return self.height - FOOTER - (depth + 1) * FRAME_HEIGHT

    def frames(self, root: _Node) -> None:
        pending: list[tuple[_Node, int, int]] = [(root, 0, 0)]  # iteratively: stacks can be deep
        while pending:
            node, offset, depth = pending.pop()
            self.frame(node, offset, depth)
            children = sorted(node.children.values(), key=lambda child: child.label)
            at = offset
            for child in children:
                pending.append((child, at, depth + 1))
                at += child.weight

    def frame(self, node: _Node, offset: int, depth: int) -> None:
        x = MARGIN + offset * self.scale
        width = node.weight * self.scale
        share = 100 * node.weight / self.total
        details = f"{self.stacks.weight.format(node.weight)}, {share:.2f}%"
        y = self.y(depth)
        self.parts.append(
            f'<g class="frame" data-o="{offset}" data-w="{node.weight}" data-d="{depth}">'
            f"<title>{escape(node.label)}\n{escape(details)}</title>"
            f'<rect x="{x}" y="{y}" width="{width}" height="{FRAME_HEIGHT - 1}" rx="2" '
            f'fill="{color(node)}"/>'
            f'<text x="{x + 3:.2f}" y="{y + FRAME_HEIGHT - 5}">{escape(fitted(node.label, width))}</text></g>\n'
        )


def _depth(root: _Node) -> int:
    deepest, pending = 0, [(root, 0)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in node.children.values())
    return deepest


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def _cdata(text: str) -> str:
    return "<![CDATA[\n" + text.replace("]]>", "]]]]><![CDATA[>") + "\n]]>"


def svg(stacks: Stacks, icicle: bool = False, title: Optional[str] = None) -> str:
    root = _tree(stacks)
    drawing = _Drawing(stacks, root.weight, icicle, _depth(root))
    meta, weight = stacks.meta, stacks.weight
    title = title or (f"Flame graph of {meta.target}" if meta.target else "Flame graph")
    measure = f"Widths: {weight.described}, {weight.format(root.weight)} in all; {meta.duration:.2f} s traced"
    header_width = WIDTH - 2 * MARGIN - 300  # the search field and its count take the rest
    drawing.parts.append(
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{drawing.height}" '
        f'viewBox="0 0 {WIDTH} {drawing.height}" data-margin="{MARGIN}" data-char-width="{CHAR_WIDTH}" '
        f'data-total="{root.weight}">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{_cdata(_asset('flamegraph.css'))}</style>\n"
        f'<rect class="background" x="0" y="0" width="{WIDTH}" height="{drawing.height}"/>\n'
        f'<text id="title" x="{MARGIN}" y="22">{escape(fitted(title, header_width * 12 / 16))}</text>\n'
        f'<text id="subtitle" x="{MARGIN}" y="42">{escape(fitted(measure, header_width))}</text>\n'
        f'<text id="command" x="{MARGIN}" y="60"><title>{escape(meta.command)}</title>'
        f"{escape(fitted(meta.command, header_width))}</text>\n"
        f'<text id="notes" x="{MARGIN}" y="76">{escape(fitted("; ".join(meta.notes), header_width))}</text>\n'
        f'<text id="unzoom" x="{WIDTH - MARGIN}" y="60" class="hidden">Reset zoom</text>\n'
        f'<foreignObject x="{WIDTH - MARGIN - 260}" y="6" width="260" height="28">'
        f'<input xmlns="http://www.w3.org/1999/xhtml" id="search" type="search" '
        f'placeholder="Search (regex)" title="Frames whose name matches are highlighted"/></foreignObject>\n'
        f'<text id="matched" x="{WIDTH - MARGIN}" y="46"></text>\n'
        f'<text id="details" x="{MARGIN}" y="{drawing.height - 10}"> </text>\n'
        f'<g id="frames" data-icicle={quoteattr(str(icicle).lower())}>\n'
    )
    if root.weight:
        drawing.frames(root)
    else:
        drawing.parts.append(f'<text x="{WIDTH / 2}" y="{HEADER + 20}" class="empty">No stacks to draw</text>')
    drawing.parts.append(f"</g>\n<script>{_cdata(_asset('flamegraph.js'))}</script>\n</svg>\n")
    return "".join(drawing.parts)


def write(stacks: Stacks, out: BinaryIO, icicle: bool = False) -> None:
    out.write(svg(stacks, icicle).encode())
