"""A task's sequence for a terminal: a legend of lanes, then one row per arrow."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from demo.trace.sequence import Arrow, Sequence, split_timing

# One colour per kind of lane, the same hues as the HTML rendering.
RICH_COLOURS = {"client": "blue", "queue": "red", "main": "green", "child": "yellow"}
RICH_COLOURS |= {"result": "magenta", "other": "white"}
_LANE_W = 4  # characters per lifeline in the terminal strip: enough for codes like "P1"


def lane_codes(seq: Sequence) -> dict[str, str]:
    """Short lane names for narrow displays: C, Q, M, P1, P2…, X1…, R."""
    codes: dict[str, str] = {}
    for p in seq.participants:
        if p.kind in ("child", "other"):
            prefix = "P" if p.kind == "child" else "X"
            codes[p.key] = f"{prefix}{sum(c.startswith(prefix) for c in codes.values()) + 1}"
        else:
            codes[p.key] = p.kind[0].upper()
    return codes


def _strip(arrow: Arrow, column: dict[str, int], width: int, colour: str) -> Text:
    cells = [" "] * width
    for centre in column.values():
        cells[centre] = "│"
    a, b = column[arrow.src], column[arrow.dst]
    for i in range(min(a, b), max(a, b) + 1):
        cells[i] = "─"
    cells[a], cells[b] = ("◆", "◆") if a == b else ("●", "▶" if b > a else "◀")
    strip = Text("".join(cells), style="dim")
    strip.stylize(f"bold {colour}", min(a, b), max(a, b) + 1)
    return strip


def to_rich(seq: Sequence) -> RenderableType:
    """Render `seq` for a terminal: a legend of lanes, then one row per arrow with its time, a
    strip of lifelines showing ●──▶ from source to destination (◆ for a note) and its label.

    Labels sit in their own column instead of between lifelines, so they stay on one line on a
    120-column terminal whatever the number of participants.
    """
    if not seq.arrows:
        return Text(f"No trace events for task {seq.task_id}.", style="yellow")
    codes, kinds = lane_codes(seq), {p.key: p.kind for p in seq.participants}
    column = {p.key: i * _LANE_W + 1 for i, p in enumerate(seq.participants)}
    width = len(seq.participants) * _LANE_W
    legend = Table.grid(padding=(0, 2))
    for p in seq.participants:
        legend.add_row(Text(codes[p.key], style=f"bold {RICH_COLOURS[p.kind]}"), p.label)
    header = [" "] * width
    for key, centre in column.items():
        header[centre : centre + len(codes[key])] = codes[key]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # Fixed widths: the label column gives way (clipped with …) before the lanes ever do.
    table.add_column("since start", justify="right", style="dim", no_wrap=True, min_width=11)
    table.add_column("".join(header), no_wrap=True, min_width=width)
    table.add_column("what", overflow="ellipsis")
    for a in seq.arrows:
        text, timing = split_timing(a.label)
        colour = RICH_COLOURS[kinds[a.src]]
        what = Text(text, colour if not a.is_note else f"italic {colour}", no_wrap=True)
        # The detail goes after the label, clipped: one line per arrow keeps the lanes readable.
        first, _, rest = a.note.partition(" ")
        what.append(f"  {rest if first == text.split(' ', 1)[0] else a.note}", style="dim")
        table.add_row(timing, _strip(a, column, width, colour), what)
    return Group(Text(f"Task {seq.task_id}", style="bold"), legend, table)
