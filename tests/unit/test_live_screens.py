"""The live screens on a recorded trace (scenario 02): the terminal's lines and their order and
bounds, the page's hub (ticks, snapshots that resume after an entry id), its HTML panels."""

from __future__ import annotations

import io
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from demo import names
from demo.live.engine import Batch, Engine
from demo.live.hub import Hub, entry_key
from demo.live.terminal import ALL, LINES_PER_S, LOGS, QUIET, TerminalFeed
from demo.render import live_html
from demo.render.sequence_html import render_svg
from demo.trace.event import TraceEvent, normalise
from demo.trace.sequence import build_sequence
from demo.trace.timeline import read_jsonl

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_send_one_mail.jsonl"
MAIL = "ab28f8df-c94b-4fcd-a034-427fbbae1376"
MAIN, CHILD = 7542, 7547
FIVE_LANES_W = 700  # a narrow page column: the tutorial's five lanes fit in it


@pytest.fixture
def events() -> list[TraceEvent]:
    return read_jsonl(TRACE)


def _terminal(
    events: list[TraceEvent], *, mode: str = ALL, lines_per_s: int = LINES_PER_S
) -> tuple[str, TerminalFeed]:
    engine = Engine(None, events=events)
    out = io.StringIO()
    console = Console(file=out, width=300, color_system=None)
    feed = TerminalFeed(engine, console, since=0, mode=mode, lines_per_s=lines_per_s)
    batch: Batch = engine.feed(events, "1-0")
    end = events[-1]["ts"]
    feed.pump(end, batch)
    feed.pump(end + 1)
    return out.getvalue(), feed


def test_the_terminal_prints_the_tutorials_lines_in_time_order_then_each_tasks_summary(
    events: list[TraceEvent],
) -> None:
    out, _ = _terminal(events)
    received = out.index(f"Task envoi_mails.envoi_mail[{MAIL}] received")
    succeeded = out.index(f"Task envoi_mails.envoi_mail[{MAIL}] succeeded in")
    summary = out.index(f"✔ envoi_mail[{MAIL[:8]}] SUCCESS in")
    assert received < succeeded < summary
    assert re.search(rf"MainProcess {MAIN} +Task envoi_mails.envoi_mail\[{MAIL}\] received", out)
    assert re.search(rf"ForkPoolWorker-2 {CHILD} +Task envoi_mails.envoi_mail\[{MAIL}\] succ", out)
    line = next(x for x in out.splitlines() if f"envoi_mail[{MAIL[:8]}] SUCCESS" in x)
    # Each process's part, in order: the client publishes, the MainProcess takes and acks,
    # the child runs and stores the result.
    assert "LPUSH" in line and f"ForkPoolWorker-2 {CHILD} runs" in line and "SETEX" in line
    assert line.index("LPUSH") < line.index(f"MainProcess {MAIN}") < line.index("SETEX")


def test_past_its_budget_the_terminal_counts_and_tallies_instead_of_scrolling(
    events: list[TraceEvent],
) -> None:
    out, _ = _terminal(events, lines_per_s=2)
    assert len(out.splitlines()) == 3  # two lines, then one tally
    assert "2 tasks done" in out and "not shown:" in out and f"{CHILD} ×2" in out


@pytest.mark.parametrize(
    ("mode", "shown", "hidden"), [(LOGS, "received", "SUCCESS in"), (QUIET, "", "received")]
)
def test_quiet_modes(events: list[TraceEvent], mode: str, shown: str, hidden: str) -> None:
    out, _ = _terminal(events, mode=mode)
    assert shown in out and hidden not in out


def _hub(events: list[TraceEvent]) -> Hub:
    engine = Engine(None, events=events)
    hub = Hub(engine, "http://127.0.0.1:5555")
    engine.run(threading.Event())
    return hub


def test_a_tick_carries_the_changed_panels_and_new_feed_rows_then_nothing(
    events: list[TraceEvent],
) -> None:
    hub = _hub(events)
    message = hub.tick()
    assert message is not None and message.entry_id == f"{len(events)}-0"
    assert {"procs", "tasks", "status"} <= set(message.data["panels"])
    assert MAIL in message.data["touched"] and message.data["feed"]
    assert message.sse().startswith(f"id: {len(events)}-0\nevent: tick\ndata: {{")
    assert f'data-task="{MAIL}"' in message.data["panels"]["tasks"]
    assert f'href="http://127.0.0.1:5555/task/{MAIL}"' in message.data["panels"]["tasks"]
    assert f'data-pid="{CHILD}" data-state="idle"' in message.data["panels"]["procs"]
    assert hub.tick() is None


def test_a_browser_that_reconnects_gets_the_panels_and_only_the_rows_it_missed(
    events: list[TraceEvent],
) -> None:
    hub = _hub(events)
    everything = hub.snapshot(None)
    assert everything.data["reset"] and everything.data["feed"]
    assert hub.snapshot(everything.entry_id).data["feed"] == []
    assert hub.snapshot("1-0").data["feed"] == everything.data["feed"]
    assert entry_key("1700000000000-12") > entry_key("1700000000000-3") > entry_key(None)


def test_a_tasks_detail_shows_the_child_that_ran_it_and_its_setex_within_the_width(
    events: list[TraceEvent],
) -> None:
    detail = _hub(events).task(MAIL, FIVE_LANES_W)
    assert f'data-child="{CHILD}"' in detail
    svg = ET.fromstring(detail[detail.index("<svg") : detail.index("</svg>") + len("</svg>")])
    assert float(svg.attrib["width"]) <= FIVE_LANES_W
    ns = "{http://www.w3.org/2000/svg}"
    setex = [
        g
        for g in svg.iter(f"{ns}g")
        if g.get("class") == "message" and g.findtext(f"{ns}title", "").startswith("SETEX")
    ]
    assert [g.get("data-src") for g in setex] == [f"child-{CHILD}"]


def test_the_diagram_keeps_its_natural_width_when_no_width_is_asked(
    events: list[TraceEvent],
) -> None:
    seq = build_sequence(events, MAIL)
    natural = ET.fromstring(render_svg(seq)).attrib["width"]
    assert float(natural) > FIVE_LANES_W


def test_text_from_the_trace_is_escaped_on_the_page() -> None:
    e = normalise(
        {
            "ts": 1.0,
            "event": names.LOG,
            "role": names.WORKER_MAIN,
            "pid": 1,
            "message": "<script>alert(1)</script>",
        }
    )
    assert e is not None
    row = live_html.log_row(e)
    assert "<script>" not in row and "&lt;script&gt;" in row
