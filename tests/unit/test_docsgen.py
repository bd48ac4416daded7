"""The docs generator, pure: blocks found and replaced, pids, ids and times normalised away,
each kind of block rendered from a small made-up trace. No scenario runs here: the committed
blocks are compared with fresh runs in tests/e2e/test_docs_match_fresh_runs.py.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from demo.docsgen import RenderError, regenerate, render_block
from demo.docsgen.annotations import HOPS_FR
from demo.docsgen.blocks import (
    BlockError,
    anchor,
    find_blocks,
    headings,
    replace_blocks,
    step_of_headings,
)
from demo.docsgen.render import Normaliser
from envoi_mails.xray.hops import HOPS

PAGE = """# A page
Some prose.
<!-- xray:begin commands scenario=02 task=envoi_mail -->
old content
<!-- xray:end -->
More prose.
<!-- xray:begin expectations scenario=02 step="3. A worker takes it" lang=fr -->
<!-- xray:end -->
"""


def _run(seed: int) -> list[dict[str, Any]]:
    """A small trace of one task, with pids, ids, tags and times drawn from `seed`."""
    rnd = random.Random(seed)
    task, tag = (str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(2))
    client, main = rnd.randint(1000, 9000), rnd.randint(1000, 9000)
    child, t0 = main + rnd.randint(1, 50), 1_700_000_000 + rnd.random() * 1000
    port, took, name = rnd.randint(1024, 65535), rnd.random(), f"ForkPoolWorker-{rnd.randint(1, 9)}"

    def at(dt: float, event: str, role: str, pid: int, **fields: Any) -> dict[str, Any]:
        common = {"ts": t0 + dt, "event": event, "role": role, "pid": pid, "ppid": 1}
        return common | {"host": "box", "task_id": task} | fields

    said = f"Task envoi_mails.envoi_mail[{task}] succeeded in {took}s: "
    said += f"{{'pid': {child}, 'smtp': '127.0.0.1:{port}'}}"
    return [
        at(0, "task.publishing", "client", client, task="envoi_mails.envoi_mail"),
        at(0.001, "redis.command", "client", client, command=["LPUSH", "celery", '{"b": 1}']),
        at(0.01, "redis.command", "worker-main", main, command=["HSET", "unacked", tag, "[1]"]),
        at(
            0.02,
            "redis.command",
            "worker-main",
            main,
            command=["ZADD", "unacked_index", "1.5", tag],
        ),
        at(0.03, "task.accepted", "worker-main", main, child_pid=child),
        at(
            0.04,
            "redis.command",
            "pool-child",
            child,
            command=["SETEX", f"celery-task-meta-{task}", "86400", "{}"],
        ),
        at(0.05, "log", "pool-child", child, process_name=name, message=said),
        at(
            0.06,
            "scenario.expectation",
            "scenario",
            client,
            task_id=None,
            step="3. A worker takes it",
            claim="a pool child writes the result",
            held=True,
        ),
    ]


def test_normaliser_hides_pids_ids_tags_times_ports_and_host() -> None:
    tag = str(uuid.uuid4())
    norm = Normaliser(tags=frozenset({tag}), hosts=frozenset({"box"}))
    text = (
        f"Task x[{uuid.uuid4()}] succeeded in 0.0123s: {{'pid': 4242, 'ppid': 17}} "
        f"ack {tag} celery@box 127.0.0.1:6379 ForkPoolWorker-3 parent 991 at 1795482562"
    )
    assert norm.text(text) == (
        "Task x[<id>] succeeded in <t>s: {'pid': <pid>, 'ppid': <pid>} ack <tag> celery@<host> "
        "127.0.0.1:<port> ForkPoolWorker-<n> parent <pid> at <t>"
    )


def test_the_ip_of_a_sender_the_spy_could_not_name_is_not_taken_for_a_host_name() -> None:
    unknown = {"event": "redis.command", "role": "unknown", "pid": None, "host": "127.0.0.1"}
    named = {"event": "log", "role": "worker-main", "pid": 7, "host": "box"}
    norm = Normaliser.from_events([unknown, named])
    assert norm.hosts == {"box"}
    assert norm.text("Connected to redis://:**@127.0.0.1:45407/0 as celery@box") == (
        "Connected to redis://:**@127.0.0.1:<port>/0 as celery@<host>"
    )


def test_normalising_before_cutting_makes_a_cut_text_stable() -> None:
    a, b = Normaliser(), Normaliser()
    first = a.text(f"Task envoi_mails.envoi_mail[{uuid.uuid4()}] succeeded in 0.5s", 40)
    second = b.text(f"Task envoi_mails.envoi_mail[{uuid.uuid4()}] succeeded in 0.25s", 40)
    assert first == second == "Task envoi_mails.envoi_mail[<id>] succe…"


@pytest.mark.parametrize("kind", ["commands", "logs", "hops", "mermaid"])
def test_a_block_renders_the_same_from_runs_with_other_pids_ids_and_times(kind: str) -> None:
    page = f"<!-- xray:begin {kind} scenario=02 task=envoi_mail -->\n<!-- xray:end -->\n"
    one, two = (regenerate(page, {"02": _run(seed)}) for seed in (1, 2))
    assert one == two
    assert "box" not in one


def test_commands_block_names_roles_and_says_what_each_row_proves() -> None:
    text = regenerate(PAGE, {"02": _run(3)})
    assert "| pool-child | `SETEX celery-task-meta-<id> 86400 <json>` | the pool child " in text
    assert "| worker-main | `HSET unacked <tag> <json>` |" in text
    assert "l'enfant" not in text.split("expectations")[0]  # lang=en unless the block says fr


def test_block_round_trip_keeps_the_page_and_rewrites_only_the_content() -> None:
    blocks = find_blocks(PAGE)
    assert [(b.kind, b.scenario, b.task, b.step, b.lang) for b in blocks] == [
        ("commands", "02", "envoi_mail", None, None),
        ("expectations", "02", None, "3. A worker takes it", "fr"),
    ]
    assert replace_blocks(PAGE, lambda b: None) == PAGE
    once = regenerate(PAGE, {"02": _run(4)})
    assert regenerate(once, {"02": _run(5)}) == once  # other pids and ids: the same page
    assert once.startswith("# A page\nSome prose.\n") and "old content" not in once
    assert find_blocks(once)[0].line == 3
    assert "- ✔ a pool child writes the result" in once
    assert regenerate(PAGE, {"03": _run(4)}) == PAGE  # blocks of other scenarios are kept


@pytest.mark.parametrize(
    "head",
    [
        "diagram scenario=02",  # unknown kind
        "commands",  # no scenario
        "commands scenario=2",
        "commands scenario=02 colour=red",
        "expectations scenario=02",  # no step
        "logs scenario=02 lang=de",
    ],
)
def test_a_malformed_block_head_is_an_error(head: str) -> None:
    with pytest.raises(BlockError):
        find_blocks(f"<!-- xray:begin {head} -->\n<!-- xray:end -->\n")


def test_an_unterminated_or_stray_marker_is_an_error() -> None:
    with pytest.raises(BlockError):
        find_blocks("<!-- xray:begin logs scenario=01 -->\nno end\n")
    with pytest.raises(BlockError):
        find_blocks("<!-- xray:end -->\n")


def test_a_task_or_step_the_trace_lacks_is_an_error() -> None:
    for head in ("logs scenario=02 task=envoi_mail#2", 'expectations scenario=02 step="9. No"'):
        block = find_blocks(f"<!-- xray:begin {head} -->\n<!-- xray:end -->\n")[0]
        with pytest.raises(RenderError):
            render_block(block, _run(6))


def test_every_hop_has_a_french_meaning() -> None:
    assert set(HOPS) <= set(HOPS_FR)


def test_anchor_is_githubs_heading_slug() -> None:
    assert anchor("3. A worker takes it") == "3-a-worker-takes-it"
    assert anchor("The task's life: `get()`") == "the-tasks-life-get"
    assert anchor("4. Le mail arrive ; le client obtient le résultat") == (
        "4-le-mail-arrive--le-client-obtient-le-résultat"
    )


FRENCH_PAGE = """# 05 · Réutilisation

## Le mécanisme

### 1. Un worker avec deux enfants

<!-- xray:begin expectations scenario=05 step="1. A worker with two children" -->
<!-- xray:end -->

### 4. Les enfants au fil du temps

<!-- xray:begin logs scenario=05 step="3. A worker that retires children after 3 tasks" -->
<!-- xray:end -->
<!-- xray:begin expectations scenario=05 step="4. The children over time" -->
<!-- xray:end -->

### 6. Une section sans attentes

## Les affirmations
"""


def test_a_steps_heading_leads_to_the_step_its_expectations_block_names() -> None:
    assert headings(FRENCH_PAGE)["1-un-worker-avec-deux-enfants"] == (
        "1. Un worker avec deux enfants"
    )
    assert step_of_headings(FRENCH_PAGE) == {
        "1-un-worker-avec-deux-enfants": "1. A worker with two children",
        "4-les-enfants-au-fil-du-temps": "4. The children over time",  # not the logs' step 3
    }


def test_a_get_that_may_find_its_result_cached_shows_no_read_rows() -> None:
    # The caller subscribes to A, then to B while A is pending: B's result may be drained
    # (and cached) during A's get(), so B's GET, result.wait and result.fetched are chance.
    def reads(task: str, t: float) -> list[dict[str, Any]]:
        key = f"celery-task-meta-{task}"
        at = {"role": "client", "pid": 10, "ppid": 1, "host": "box", "task_id": task}
        return [
            at | {"ts": t, "event": "redis.command", "command": ["SUBSCRIBE", key]},
            at | {"ts": t + 0.1, "event": "task.publishing", "task": "envoi_mails.add"},
            at | {"ts": t + 5, "event": "result.wait"},
            at | {"ts": t + 5.1, "event": "redis.command", "command": ["GET", key]},
            at | {"ts": t + 5.2, "event": "result.fetched"},
        ]

    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events = sorted([*reads(a, 1.0), *reads(b, 2.0)], key=lambda e: e["ts"])
    page = "<!-- xray:begin hops scenario=02 task=add#{} -->\n<!-- xray:end -->\n"
    first, second = (regenerate(page.format(n), {"02": events}) for n in (1, 2))
    assert "result.wait" in first and "result.fetched" in first
    assert "result.wait" not in second and "result.fetched" not in second
    assert "task.publishing" in second
