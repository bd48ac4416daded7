"""Draw a task's sequence diagram as one self-contained HTML page with an inline SVG.

The page opens offline: no scripts, no web fonts, no external style sheets. Every piece of text
that comes from the trace is XML-escaped.
"""

from __future__ import annotations

import html
import re

from demo.trace.sequence import Arrow, Sequence, split_timing

# Okabe-Ito hues (told apart with the common colour-vision deficiencies), the orange and pink
# darkened so that text in them stays readable on white.
COLOURS = {"client": "#0072B2", "queue": "#D55E00", "main": "#00855F", "child": "#B86E00"}
COLOURS |= {"result": "#A8478A", "other": "#666666"}
CHAR_W = 7.2  # width of one 12px monospace character: text is sized without a layout engine
ROW_H = 30
TIME_W = 96  # left margin holding the "+12.3 ms" column
BOX_LINES = 3
BOX_H = 14 * BOX_LINES + 14
TOP = 16
MIN_COL_W = 110.0  # a lane never narrower, whatever the width asked for: labels clip first
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML 1.0

_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px; }
p.sub { margin: 0 0 12px; color: #555; font-size: 13px; }
.scroll { overflow-x: auto; }
"""
# Inside the SVG so that the drawing looks the same when saved or converted on its own.
_SVG_STYLE = """
text { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
.time { fill: #666; }
.band { fill: #f4f6f8; }
.lifeline { stroke: #999; stroke-dasharray: 4 4; }
.note rect { fill: #fffbe6; }
.box text { font-weight: 600; }
"""


def esc(text: object) -> str:
    """Escape `text` for XML content and attributes, dropping characters XML cannot hold."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def _wrap(text: str, chars: int, lines: int) -> list[str]:
    """Greedy word wrap into at most `lines` lines of `chars`, the last one clipped."""
    out: list[str] = []
    for word in text.split():
        if out and len(out[-1]) + 1 + len(word) <= chars:
            out[-1] += " " + word
        else:
            out.append(word)
    if len(out) > lines:
        out[lines - 1 :] = [" ".join(out[lines - 1 :])]
    return [_clip(line, chars) for line in out]


def _column_width(seq: Sequence, width: float | None = None) -> float:
    # Wide enough for the longest label between neighbours, within bounds that keep 6 lanes on a
    # laptop screen; longer labels are clipped and shown whole in their tooltip. With a width
    # to fit (a page's column), no wider than that width shared between the lanes.
    longest = max((len(split_timing(a.label)[0]) for a in seq.arrows), default=20)
    natural = min(max(longest * CHAR_W + 24, 170.0), 300.0)
    if width is None or not seq.participants:
        return natural
    return max(min(natural, (width - TIME_W - 16) / len(seq.participants)), MIN_COL_W)


def _arrow_svg(a: Arrow, x1: float, x2: float, y: float, colour: str, col_w: float) -> str:
    text, _ = split_timing(a.label)
    tip = esc(a.label + (f"\n{a.note}" if a.note else ""))
    if a.is_note:
        w = min(len(text) * CHAR_W + 16, col_w - 12)
        shown = esc(_clip(text, int((w - 16) / CHAR_W)))
        return (
            f'<g class="note"><title>{tip}</title>'
            f'<rect x="{x1 - w / 2:.1f}" y="{y - 10:.1f}" width="{w:.1f}" height="20" rx="3" '
            f'style="stroke:{colour}"/>'
            f'<text x="{x1:.1f}" y="{y + 4:.1f}" text-anchor="middle">{shown}</text></g>'
        )
    sign = 1 if x2 > x1 else -1
    head = x2 - sign * 9
    shown = esc(_clip(text, int((abs(x2 - x1) - 12) / CHAR_W)))
    return (
        f'<g class="message" data-src="{esc(a.src)}" data-dst="{esc(a.dst)}"><title>{tip}</title>'
        f'<path class="arrow" d="M{x1:.1f} {y:.1f} H{head:.1f}" stroke="{colour}" '
        f'stroke-width="1.6" fill="none"/>'
        f'<polygon points="{x2:.1f},{y:.1f} {head:.1f},{y - 4.5:.1f} {head:.1f},{y + 4.5:.1f}" '
        f'fill="{colour}"/>'
        f'<text x="{(x1 + x2) / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" '
        f'fill="{colour}">{shown}</text></g>'
    )


def render_svg(seq: Sequence, width: float | None = None) -> str:
    """An SVG of `seq`: a box and dashed lifeline per participant, then one row per arrow, with
    its time since the first event on the left. Messages are `<g class="message">` (a `<path
    class="arrow">` with a head; `data-src`/`data-dst` name the lanes); notes are
    `<g class="note">` boxes on their lifeline. Size follows the counts of both; with `width`,
    the lanes share that width (down to MIN_COL_W each)."""
    col_w = _column_width(seq, width)
    x = {p.key: TIME_W + col_w * i + col_w / 2 for i, p in enumerate(seq.participants)}
    first_row = TOP + BOX_H + 28
    bottom = first_row + max(len(seq.arrows) - 1, 0) * ROW_H + 20
    width, height = TIME_W + col_w * len(seq.participants) + 16, bottom + 16
    colour = {p.key: COLOURS.get(p.kind, COLOURS["other"]) for p in seq.participants}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Sequence diagram of task {esc(seq.task_id)}">',
        f"<style>{_SVG_STYLE}</style>",
    ]
    parts += [
        f'<rect class="band" x="0" y="{first_row + i * ROW_H - ROW_H / 2:.1f}" '
        f'width="{width:.0f}" height="{ROW_H}"/>'
        for i in range(1, len(seq.arrows), 2)
    ]
    for p in seq.participants:
        cx, w = x[p.key], col_w - 16
        lines = _wrap(p.label, int((w - 12) / CHAR_W), BOX_LINES)
        parts.append(
            f'<line class="lifeline" x1="{cx:.1f}" y1="{TOP + BOX_H:.1f}" x2="{cx:.1f}" '
            f'y2="{bottom:.1f}"/>'
            f'<g class="box"><title>{esc(p.label)}</title>'
            f'<rect x="{cx - w / 2:.1f}" y="{TOP}" width="{w:.1f}" height="{BOX_H}" rx="6" '
            f'fill="#fff" stroke="{colour[p.key]}" stroke-width="2"/>'
        )
        top = TOP + (BOX_H - 14 * len(lines)) / 2 + 11
        parts += [
            f'<text x="{cx:.1f}" y="{top + 14 * i:.1f}" text-anchor="middle" '
            f'fill="{colour[p.key]}">{esc(line)}</text>'
            for i, line in enumerate(lines)
        ]
        parts.append("</g>")
    for i, a in enumerate(seq.arrows):
        y = first_row + i * ROW_H
        timing = split_timing(a.label)[1]
        parts.append(
            f'<text class="time" x="{TIME_W - 10}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(timing)}</text>"
        )
        parts.append(_arrow_svg(a, x[a.src], x[a.dst], y, colour[a.src], col_w))
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(seq: Sequence, title: str) -> str:
    """One self-contained HTML document: `title`, a one-line summary, and `render_svg(seq)`."""
    notes = sum(a.is_note for a in seq.arrows)
    summary = (
        f"Task <code>{esc(seq.task_id)}</code> · {len(seq.participants)} processes and keys · "
        f"{len(seq.arrows) - notes} messages, {notes} notes · times since the first event · "
        "hover an arrow for its detail"
        if seq.arrows
        else f"No trace events for task <code>{esc(seq.task_id)}</code>."
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{esc(title)}</h1>\n<p class="sub">{summary}</p>\n'
        f'<div class="scroll">\n{render_svg(seq)}\n</div>\n</body>\n</html>\n'
    )
