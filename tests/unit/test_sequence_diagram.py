"""Unit tests of the sequence-diagram model and its Mermaid, terminal and HTML renderings."""

from __future__ import annotations

import importlib.util
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from demo.render import mermaid
from demo.render.mermaid import to_mermaid
from demo.render.sequence_html import to_html
from demo.render.sequence_text import to_rich
from demo.trace import sequence as diagram
from demo.trace.sequence import (
    Arrow,
    Participant,
    Sequence,
    build_sequence,
)

ROOT = Path(__file__).resolve().parents[2]

TASK = "d4181aaa-a2a2-41e8-9cb5-e0a6d54e4e89"
OTHER = "0b5e3c1e-0000-4000-8000-000000000000"
T0 = 1795479837.490
CLIENT, MAIN, CHILD = 4100, 5666, 5670
META = f"celery-task-meta-{TASK}"
TAG = "fde24a15-33d9-4ef4-b8db-487c24d9e6b7"
ENVELOPE = '{"body": "W1syLCAzXV0=", "headers": {"task": "gapp.add", "id": "' + TASK + '"}}'
RESULT = '{"status": "SUCCESS", "result": 5, "task_id": "' + TASK + '"}'
PROCS = {"client": (CLIENT, 4000), "worker-main": (MAIN, 1), "pool-child": (CHILD, MAIN)}


def ev(ms: float, event: str, role: str, **fields: Any) -> dict[str, Any]:
    """A trace event `ms` after T0, emitted (or, for a command, sent) by `role`."""
    pid, ppid = PROCS.get(role, (0, 0))
    base = {"ts": T0 + ms / 1000, "event": event, "role": role, "pid": pid, "ppid": ppid}
    return base | {"host": "vm", "task_id": TASK, "task": "gapp.add"} | fields


def cmd(ms: float, role: str, *command: str, **fields: Any) -> dict[str, Any]:
    return ev(ms, "redis.command", role, command=list(command), addr="127.0.0.1:1", **fields)


def one_task() -> list[dict[str, Any]]:
    """One add(2, 3) task in the order the real MONITOR capture and hooks show it."""
    return [
        cmd(0.0, "client", "SUBSCRIBE", META),
        ev(7.5, "task.publishing", "client"),
        cmd(7.6, "client", "MULTI"),
        cmd(8.8, "client", "LPUSH", "celery", ENVELOPE),
        ev(9.0, "task.published", "client"),
        cmd(9.5, "worker-main", "BRPOP", "celery", "celery\x06\x163", "celery\x06\x166", "1"),
        ev(10.5, "task.received", "worker-main"),
        cmd(10.6, "worker-main", "ZADD", "unacked_index", "1795479837.4995", TAG),
        cmd(10.7, "worker-main", "HSET", "unacked", TAG, f"[{ENVELOPE}]"),
        cmd(10.8, "worker-main", "EXEC"),
        ev(11.0, "log", "worker-main", level="info", message=f"Task gapp.add[{TASK}] received"),
        ev(14.0, "task.accepted", "worker-main", child_pid=CHILD),
        cmd(14.6, "worker-main", "ZREM", "unacked_index", TAG),
        cmd(14.7, "worker-main", "HDEL", "unacked", TAG),
        ev(14.8, "task.acked", "worker-main"),
        ev(15.0, "task.prerun", "pool-child"),
        cmd(19.9, "pool-child", "GET", META),
        cmd(20.9, "pool-child", "SETEX", META, "86400", RESULT, summary="result written"),
        cmd(21.0, "pool-child", "PUBLISH", META, RESULT),
        ev(21.1, "result.stored", "pool-child", key=META, ttl=86400, status="SUCCESS"),
        ev(21.2, "task.success", "pool-child"),
        ev(21.5, "result.message", "client"),
        cmd(21.6, "client", "UNSUBSCRIBE", META),
        ev(22.0, "result.fetched", "client"),
    ]


def noise() -> list[dict[str, Any]]:
    """Events that must not reach the diagram: another task, the spy's own commands."""
    return [
        ev(12.0, "task.received", "worker-main", task_id=OTHER),
        cmd(12.1, "client", "LPUSH", "celery", "{}", task_id=OTHER),
        cmd(12.2, "spy", "CLIENT", "SETNAME", "xray-spy"),
    ]


@pytest.fixture
def seq() -> Sequence:
    # Reversed and mixed with noise: the builder must sort and filter, not trust the input order.
    return build_sequence(list(reversed(one_task() + noise())), TASK)


def arrows_of(seq: Sequence, prefix: str) -> list[Arrow]:
    return [a for a in seq.arrows if a.label.startswith(prefix)]


def test_participants_are_client_queue_main_child_result_in_that_order(seq: Sequence) -> None:
    keys = [p.key for p in seq.participants]
    assert keys == ["client", "queue", "main", f"child-{CHILD}", "result"]


def test_participant_labels_name_the_processes_and_keys(seq: Sequence) -> None:
    labels = {p.key: p.label for p in seq.participants}
    assert labels["client"] == f"Client pid {CLIENT}"
    assert labels["queue"] == "Redis: queue 'celery'"
    assert labels["main"] == f"Worker MainProcess pid {MAIN}"
    assert labels[f"child-{CHILD}"] == f"Pool child pid {CHILD} (ForkPoolWorker, parent {MAIN})"
    assert labels["result"].startswith("Redis: celery-task-meta-d4181aaa")


def test_lpush_arrow_goes_from_client_to_queue(seq: Sequence) -> None:
    [lpush] = arrows_of(seq, "LPUSH")
    assert (lpush.src, lpush.dst) == ("client", "queue")
    assert lpush.label.startswith("LPUSH celery +")


def test_setex_arrow_goes_from_child_to_result(seq: Sequence) -> None:
    [setex] = arrows_of(seq, "SETEX")
    assert (setex.src, setex.dst) == (f"child-{CHILD}", "result")


def test_broker_commands_of_the_main_process_go_to_the_queue(seq: Sequence) -> None:
    for name in ("BRPOP celery", "ZADD", "HSET", "ZREM", "HDEL"):
        [arrow] = arrows_of(seq, name)
        assert (arrow.src, arrow.dst) == ("main", "queue"), name


def test_result_commands_go_to_the_result_key(seq: Sequence) -> None:
    ends = {a.label.split()[0]: (a.src, a.dst) for a in seq.arrows if not a.is_note}
    assert ends["SUBSCRIBE"] == ends["UNSUBSCRIBE"] == ("client", "result")
    assert ends["GET"] == ends["PUBLISH"] == (f"child-{CHILD}", "result")


def test_hops_become_arrows_between_the_processes_that_exchange_them(seq: Sequence) -> None:
    ends = {split(a.label): (a.src, a.dst) for a in seq.arrows}
    assert ends["BRPOP → received"] == ("queue", "main")
    assert ends["ACK (child started job)"] == (f"child-{CHILD}", "main")
    assert ends["result message"] == ("result", "client")
    assert ends["prerun: task body starts"] == (f"child-{CHILD}", f"child-{CHILD}")
    assert ends["result.get() returned"] == ("client", "client")
    assert ends["task.success"] == (f"child-{CHILD}", f"child-{CHILD}")


def split(label: str) -> str:
    return diagram.split_timing(label)[0]


def test_hop_carried_by_a_seen_command_is_kept_as_a_note_not_a_second_arrow(seq: Sequence) -> None:
    notes = {split(a.label): a.src for a in seq.arrows if a.is_note}
    assert notes["published (after_task_publish)"] == "client"
    assert notes["ack"] == "main"
    assert notes["result stored (SUCCESS)"] == f"child-{CHILD}"
    assert [a for a in seq.arrows if (a.src, a.dst) == ("client", "queue")] == arrows_of(
        seq, "LPUSH"
    )


def test_published_hop_without_lpush_becomes_an_arrow_from_client_to_queue() -> None:
    events = [e for e in one_task() if e.get("command", [""])[0] != "LPUSH"]
    [published] = arrows_of(build_sequence(events, TASK), "published (")
    assert (published.src, published.dst) == ("client", "queue")


def test_log_event_is_a_note_on_the_process_that_logged_it(seq: Sequence) -> None:
    [log] = arrows_of(seq, "log:")
    assert log.is_note and log.src == "main"
    assert split(log.label) == f"log: Task gapp.add[{TASK}] received"


def test_events_of_another_task_are_excluded(seq: Sequence) -> None:
    assert len(seq.arrows) == len(one_task()) - 2  # MULTI and EXEC are dropped
    assert all(a.ts != pytest.approx(T0 + 0.012, abs=1e-4) for a in seq.arrows)


def test_multi_exec_and_spy_commands_are_dropped(seq: Sequence) -> None:
    names = {a.label.split()[0] for a in seq.arrows}
    assert not names & {"MULTI", "EXEC", "CLIENT"}


def test_arrows_are_sorted_by_time(seq: Sequence) -> None:
    assert [a.ts for a in seq.arrows] == sorted(a.ts for a in seq.arrows)
    assert seq.arrows[0].label.startswith("SUBSCRIBE")


def test_every_label_ends_with_the_time_since_the_first_event_in_ms(seq: Sequence) -> None:
    assert seq.arrows[0].label.endswith(" +0.0 ms")
    [setex] = arrows_of(seq, "SETEX")
    assert setex.label == "SETEX celery-task-meta-d4181aaa… — result written +20.9 ms"
    assert all(re.search(r" \+\d+\.\d ms$", a.label) for a in seq.arrows)


def test_labels_never_carry_a_payload_and_stay_on_one_line(seq: Sequence) -> None:
    for a in seq.arrows:
        assert "{" not in a.label and "W1syLCAzXV0" not in a.label and "\n" not in a.label
    [hset] = arrows_of(seq, "HSET")
    assert f"<{len(ENVELOPE) + 2} bytes>" in hset.note  # the detail says how big, not what


def test_priority_list_separators_are_shown_escaped(seq: Sequence) -> None:
    [brpop] = arrows_of(seq, "BRPOP celery")
    assert brpop.label.startswith("BRPOP celery (+2 more)")
    assert "celery\\x06\\x163" in brpop.note and "\x06" not in brpop.note


def test_unknown_task_gives_an_empty_sequence_that_every_renderer_accepts() -> None:
    empty = build_sequence(one_task(), "no-such-task")
    assert (empty.participants, empty.arrows) == ([], [])
    assert to_mermaid(empty) == "sequenceDiagram\n"
    assert "<svg" in to_html(empty, "empty") and "No trace events" in to_html(empty, "empty")
    assert "No trace events" in render_text(empty)


def test_every_catalogued_hop_becomes_exactly_one_arrow_or_note_but_a_reply() -> None:
    path = ROOT / "envoi_mails" / "xray" / "hops.py"
    # Loaded by path: importing the envoi_mails package would build the Celery app.
    spec = importlib.util.spec_from_file_location("hops_catalogue", path)
    assert spec and spec.loader
    hops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hops)
    named = set(diagram._HOP_ARROWS) | set(diagram._HOP_NOTES) | set(diagram._CARRIED_BY)
    assert named <= set(hops.HOPS), "the diagram maps a hop the catalogue does not know"
    for name, (role, _) in hops.HOPS.items():
        event = ev(1.0, name, role if role != "*" else "client", child_pid=CHILD)
        if name == "redis.command":
            event |= {"role": "client", "command": ["GET", META]}
        # A reply (BRPOP's message) is drawn by its command's arrow, not one of its own.
        expected = 0 if name == "redis.reply" else 1
        assert len(build_sequence([event], TASK).arrows) == expected, name


def mermaid_lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_mermaid_has_one_participant_line_per_participant(seq: Sequence) -> None:
    lines = [ln for ln in mermaid_lines(to_mermaid(seq)) if ln.lstrip().startswith("participant")]
    assert len(lines) == len(seq.participants)
    label = f"Pool child pid {CHILD} (ForkPoolWorker, parent {MAIN})"
    assert lines[3] == f"    participant child_{CHILD} as {label}"


def test_mermaid_lines_are_all_of_known_forms(seq: Sequence) -> None:
    ident, text = r"[A-Za-z_][A-Za-z0-9_]*", r"(?:[^;#<>\"'%\n]|#\w+;)+"  # entity codes only
    forms = [
        r"sequenceDiagram",
        rf"    participant {ident} as {text}",
        rf"    {ident}->>{ident}: {text}",
        rf"    Note over {ident}: {text}",
    ]
    lines = mermaid_lines(to_mermaid(seq))
    assert lines[0] == "sequenceDiagram"
    for line in lines:
        assert any(re.fullmatch(form, line) for form in forms), line
    assert len(lines) == 1 + len(seq.participants) + len(seq.arrows)
    assert "    client->>queue: LPUSH celery +8.8 ms" in lines


def test_mermaid_escapes_characters_that_end_or_comment_out_a_statement() -> None:
    seq = Sequence(
        "t",
        [Participant("client", 'Client "A"'), Participant("queue", "Redis: queue 'celery'")],
        [Arrow(T0, "client", "queue", "a;b #c <d> 100% +1.0 ms")],
    )
    lines = mermaid_lines(to_mermaid(seq))
    assert lines[1] == "    participant client as Client #quot;A#quot;"
    assert lines[2] == "    participant queue as Redis: queue #39;celery#39;"
    assert lines[3] == "    client->>queue: a#59;b #35;c #lt;d#gt; 100#37; +1.0 ms"


def test_mermaid_ids_are_word_characters_and_never_start_with_a_keyword() -> None:
    assert mermaid.mermaid_id("child-5670") == "child_5670"
    assert mermaid.mermaid_id("end-1") == "p_end_1"
    assert mermaid.mermaid_id("other-unknown-0") == "other_unknown_0"


def render_text(seq: Sequence, width: int = 120) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(to_rich(seq))
    return console.export_text()


def test_rich_rendering_fits_120_columns_and_names_every_participant(seq: Sequence) -> None:
    text = render_text(seq)
    assert max(len(line) for line in text.splitlines()) <= 120
    for p in seq.participants:
        assert p.label in text
    assert "LPUSH celery" in text and "+8.8 ms" in text


def test_rich_rendering_draws_each_arrow_from_source_to_destination_lane(seq: Sequence) -> None:
    rows = render_text(seq).splitlines()
    [lpush] = [r for r in rows if "LPUSH celery" in r]
    [stored] = [r for r in rows if "SETEX" in r]
    [subscribe] = [r for r in rows if "SUBSCRIBE" in r and "UNSUBSCRIBE" not in r]
    [message] = [r for r in rows if "result message" in r]
    assert "●───▶" in lpush  # client lane to the queue lane next to it
    assert "●───▶" in stored  # child lane to the result lane next to it
    assert "●" + "─" * 15 + "▶" in subscribe  # client lane across three others to the result
    assert "◀" in message and message.index("◀") < message.index("●")


def svg_of(page: str) -> ET.Element:
    """The inline SVG, parsed as XML: fails on any unescaped text."""
    return ET.fromstring(page[page.index("<svg") : page.index("</svg>") + len("</svg>")])


def test_html_has_an_svg_with_one_arrow_path_per_message_and_one_box_per_note(
    seq: Sequence,
) -> None:
    page = to_html(seq, "add(2, 3)")
    svg, ns = svg_of(page), "{http://www.w3.org/2000/svg}"
    paths = svg.findall(f".//{ns}path[@class='arrow']")
    notes = svg.findall(f".//{ns}g[@class='note']")
    assert len(paths) == sum(not a.is_note for a in seq.arrows)
    assert len(notes) == sum(a.is_note for a in seq.arrows)
    assert len(svg.findall(f".//{ns}line[@class='lifeline']")) == len(seq.participants)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1


def test_html_references_no_url_except_the_svg_namespace(seq: Sequence) -> None:
    page = to_html(seq, "add(2, 3)")
    urls = re.findall(r"https?://[^\s\"'<>]*", page)
    assert urls == ["http://www.w3.org/2000/svg"]
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_html_escapes_markup_in_labels_and_title() -> None:
    seq = Sequence(
        "t<1>",
        [Participant("client", "Client <b>"), Participant("result", "Redis & co")],
        [Arrow(T0, "client", "result", "<script>alert('x')</script> +0.0 ms", note='"q"')],
    )
    page = to_html(seq, "<script>title</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Redis &amp; co" in page
    svg_of(page)  # well-formed XML despite the markup in every field


def test_html_size_grows_with_participants_and_arrows(seq: Sequence) -> None:
    small = Sequence("t", seq.participants[:2], arrows_of(seq, "LPUSH"))
    few, many = (svg_of(to_html(s, "t")).attrib for s in (small, seq))
    assert float(many["width"]) > float(few["width"])
    assert float(many["height"]) > float(few["height"])
