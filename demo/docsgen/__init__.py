"""The docs generator: fill the generated blocks of docs/**/*.md from real scenario runs.

`python -m demo.docsgen [NN …]` runs the scenarios and rewrites the blocks. Here: which
events a block shows (`select`), its rendering (`render_block`) and a page's (`regenerate`),
importable so that tests/e2e/test_docs_match_fresh_runs.py regenerates a block from its own
run of the scenario.

    blocks       find, parse and replace blocks; read claim citations, claims tables and
                 the step each heading's section checks
    render       each KIND from a list of trace events, normalised
    annotations  the catalogue of "what it proves" sentences, en and fr
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from demo import names
from demo.docsgen.blocks import Block, Citation, replace_blocks, step_of_headings
from demo.docsgen.render import (
    RENDERERS,
    Event,
    Normaliser,
    RenderError,
    render_expectations,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCENARIOS = ROOT / "scenarios"
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# kombu's upkeep keys: bindings and their deadlines (kombu 5.7), the unacked restore sweep.
_UPKEEP = (
    names.BINDING_PREFIX,
    names.BINDING_PERMANENT_PREFIX,
    names.BINDING_DEADLINES,
    names.UNACKED_MUTEX,
)
_UPKEEP_COMMANDS = {"EVAL", "EVALSHA", "SADD", "ZADD", "ZRANGEBYSCORE", "SET", "GET", "DEL"}

__all__ = ["DOCS", "ROOT", "SCENARIOS", "Event", "RenderError", "cited_step", "page_lang"]
__all__ += ["pages"]
__all__ += ["regenerate", "render_block", "scenario_script", "select", "task_id_for"]


def pages(docs: Path = DOCS) -> list[Path]:
    """Every Markdown page under docs/, sorted."""
    return sorted(docs.rglob("*.md"))


def page_lang(page: Path, docs: Path = DOCS) -> str:
    """A page's language: fr under docs/fr/, else en (a block's lang= overrides it)."""
    parts = page.resolve().relative_to(docs.resolve()).parts
    return "fr" if parts[:1] == ("fr",) else "en"


def cited_step(page: Path, citation: Citation) -> str:
    """The scenario step that `citation`, a link on `page`, cites: the step its target
    heading's section checks (blocks.step_of_headings), as the scenario names it, so that a
    French link with a French title cites the same step as the English one. "" when the
    target is not a step's heading of an existing page."""
    path, _, fragment = citation.target.partition("#")
    target = (page.parent / path).resolve()
    if not target.is_file():
        return ""
    return step_of_headings(target.read_text(encoding="utf-8")).get(fragment, "")


def scenario_script(number: str, scenarios: Path = SCENARIOS) -> Path:
    """scenarios/NN_*.py for a two-digit number; LookupError when there is none."""
    found = sorted(scenarios.glob(f"{number}_*.py"))
    if not found:
        raise LookupError(f"no scenario {number} in {scenarios}")
    return found[0]


def task_id_for(events: Sequence[Event], name: str, nth: int = 1) -> str:
    """The id of the `nth` task called `name` (or `*.name`) published in the trace."""
    ids: dict[str, None] = {}
    for e in events:
        task = str(e.get("task", ""))
        if e.get("event") == "task.publishing" and (task == name or task.endswith("." + name)):
            ids.setdefault(str(e["task_id"]))
    if len(ids) < nth:
        raise RenderError(f"the trace has {len(ids)} task(s) named {name!r}, not {nth}")
    return list(ids)[nth - 1]


def _checks(events: Sequence[Event], step: str) -> list[Event]:
    checks = [e for e in events if e.get("event") == names.EXPECTATION and e["step"] == step]
    if not checks:
        raise RenderError(f"no step {step!r} in this scenario's trace")
    return checks


def step_window(events: Sequence[Event], step: str) -> tuple[float, float]:
    """From the previous step's last expectation to this step's last one: the trace marks
    no step start, its expectations are the only step boundaries it has."""
    end = max(float(e["ts"]) for e in _checks(events, step))
    before = [
        float(e["ts"])
        for e in events
        if e.get("event") == names.EXPECTATION and e["step"] != step and e["ts"] < end
    ]
    return (max(before, default=0.0), end)


def _timer(e: Event) -> tuple[str, ...] | None:
    """The identity, per process, of a row a timer repeats; None for any other event.

    BRPOP polling (every second), heartbeats (every 2 s) and kombu's upkeep (bindings with
    a deadline, refreshed by a Lua script; the unacked sweep) recur for the whole run:
    whether one falls inside a given step's window is chance, not Celery's behaviour.
    """
    pid = str(e.get("pid"))
    if e.get("event") == "worker.heartbeat":
        return (pid, "hop", "worker.heartbeat")
    args = [str(a) for a in e.get("command") or ()]
    if e.get("event") != names.REDIS_COMMAND or not args:
        return None
    name, key = args[0].upper(), _UUID.sub("", args[1]) if len(args) > 1 else ""
    key = args[3] if name in ("EVAL", "EVALSHA") and len(args) > 3 else key
    polling = name == "BRPOP" and ".reply." not in key
    beat = name == "PUBLISH" and key.endswith("/worker.heartbeat")
    upkeep = name in ("TIME", "SCRIPT", "ZRANGE") or (
        name in _UPKEEP_COMMANDS and key.startswith(_UPKEEP)
    )
    return (pid, name, key) if polling or beat or upkeep else None


def _by_chance(events: Sequence[Event]) -> set[int]:
    """Indexes of the timer rows a step's window leaves out: every repeat (the first of each
    comes as its process starts, so it always lands in the same step), and every heartbeat
    PUBLISH (the first comes 2 s after worker-online, in whichever step is running then)."""
    seen: set[tuple[str, ...]] = set()
    out = set()
    for i, e in enumerate(events):
        ident = _timer(e)
        if ident is not None and (ident in seen or ident[-1].endswith("/worker.heartbeat")):
            out.add(i)
        seen.add(ident or ())
    return out


def _cached_reads(events: Sequence[Event], task_id: str) -> set[int]:
    """Indexes of the caller's `get()` rows for a task whose result may reach it early.

    A caller that already waits on another result when it subscribes to this one shares one
    pub/sub connection for both: if this result is PUBLISHed while it drains for the other,
    `get()` later finds it cached and sends no GET, no result.wait, no result.fetched
    (celery/backends/asynchronous.py `BaseResultConsumer.on_state_change` →
    `AsyncResult._maybe_set_cache`). Which happens is timing, so those rows are left out.
    """
    mine = [i for i, e in enumerate(events) if e.get("task_id") == task_id]
    sub = next((events[i] for i in mine if _command_name(events[i]) == "SUBSCRIBE"), None)
    if sub is None:
        return set()
    pending: set[str] = set()
    for e in events:
        if e is sub:
            break
        if e.get("pid") == sub.get("pid") and _command_name(e) in ("SUBSCRIBE", "UNSUBSCRIBE"):
            channel = str(e["command"][1]) if len(e["command"]) > 1 else ""
            (pending.add if _command_name(e) == "SUBSCRIBE" else pending.discard)(channel)
    if not pending:
        return set()
    reads = {"result.wait", "result.fetched"}
    return {
        i
        for i in mine
        if events[i].get("role") == names.CLIENT
        and (events[i].get("event") in reads or _command_name(events[i]) in ("GET", "MGET"))
    }


def _command_name(e: Event) -> str:
    command = e.get("command") or [""]
    return str(command[0]).upper() if e.get("event") == names.REDIS_COMMAND else ""


def select(events: Sequence[Event], block: Block) -> list[Event]:
    """The events a block shows: its task's (task=), those of its step's window (step=),
    both, or with neither the whole run. Rows whose presence is chance are left out: a
    cached `get()`'s reads (_cached_reads), and in a step's window without task= the rows
    a timer put there (_by_chance)."""
    kept = set(range(len(events)))
    if block.task:
        task_id = task_id_for(events, block.task, block.nth)
        kept = {i for i in kept if events[i].get("task_id") == task_id}
        kept -= _cached_reads(events, task_id)
    elif block.step:
        kept -= _by_chance(events)
    if block.step:
        start, end = step_window(events, block.step)
        kept = {i for i in kept if start < float(events[i]["ts"]) <= end}
    return [events[i] for i in sorted(kept)]


def render_block(block: Block, events: Sequence[Event], lang: str = "en") -> str:
    """The Markdown content of `block`, from the events of its scenario's run."""
    lang = block.lang or lang
    if block.kind == "expectations":
        return render_expectations(_checks(events, block.step or ""), lang)
    if block.kind not in RENDERERS:
        raise RenderError(f"unknown block kind {block.kind!r}")
    return RENDERERS[block.kind](select(events, block), Normaliser.from_events(events), lang)


def regenerate(
    text: str,
    runs: Mapping[str, Sequence[Event]],
    lang: str = "en",
    errors: list[str] | None = None,
) -> str:
    """The page with every block of a scenario in `runs` rendered from that run's events.

    Blocks of other scenarios keep their content. A block that cannot be rendered raises
    RenderError, naming its line; with an `errors` list, it keeps its content instead and
    the message goes to the list. A malformed page always raises BlockError.
    """

    def render(block: Block) -> str | None:
        if block.scenario not in runs:
            return None
        try:
            return render_block(block, runs[block.scenario], lang)
        except RenderError as exc:
            message = f"line {block.line} ({block.kind} scenario={block.scenario}): {exc}"
            if errors is None:
                raise RenderError(message) from None
            errors.append(message)
            return None

    return replace_blocks(text, render)
