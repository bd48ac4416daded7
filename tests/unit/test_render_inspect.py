"""The inspect snapshot's rendering: one line per cell, within 120 columns, markup escaped."""

from __future__ import annotations

import time
import uuid

from rich.console import Console

from demo import inspectors as ins
from demo.render.inspect import cut, escape, render_snapshot


def test_escape_and_cut_keep_cells_on_one_line_within_width() -> None:
    assert escape("celery\x06\x166") == "celery\\x06\\x166"
    assert cut({"a": [1, 2, 3]}, 8) == '{"a": […'
    assert len(cut("x" * 500, 40)) == 40


def test_snapshot_renders_within_120_columns_even_with_long_values() -> None:
    long = "envoi_mails." + "x" * 200
    message = ins.Message(
        {
            "task": long,
            "id": str(uuid.uuid4()),
            "args": ["[red]" * 50],
            "kwargs": {"k": "v" * 100},
            "priority": 0,
        }
    )
    sub = ins.SubQueue("celery\x06\x166", 6, 1, (message,))
    reserved = ins.Reserved("tag" * 20, 1.0, 2.0, 3601.0, message, "", "celery")
    result = ins.StoredResult("id", 86400, "SUCCESS", {"r": "y" * 300}, "2026-01-01", None)
    snap = ins.Snapshot(
        time.time(),
        9,
        (ins.QueueView("celery", (sub,)),),
        ins.UnackedView(1, (reserved,)),
        ins.BindingsView((ins.Binding("celery", "celery", "", long),), (), ()),
        ins.ResultsView((result,), (), True),
        (ins.KeyInfo("xray:trace", "stream", 5, None),),
        None,
    )
    console = Console(width=120, record=True, color_system=None)
    console.print(render_snapshot(snap))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "celery\\x06\\x166" in text and "[red]" in text  # escaped, not read as markup
