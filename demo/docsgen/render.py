"""Each block KIND, rendered from a scenario's trace events as Markdown, normalised.

Pure functions. Normalisation makes a block depend only on hops, keys, commands and roles:
pids → <pid>, task ids and uuids → <id>, delivery tags → <tag>, timestamps and durations
→ <t>, ports → <port>, the host name → <host>, ForkPoolWorker-N → ForkPoolWorker-<n>.
Text is normalised *before* it is cut to length, so a cut never falls on a varying part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from demo import names
from demo.docsgen.annotations import HEADERS, annotate, hop_meaning
from demo.protocol.commands import describe
from demo.render.mermaid import to_mermaid
from demo.trace.sequence import Participant, build_sequence, split_timing

Event = Mapping[str, Any]
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_TOKENS = re.compile(
    rf"(?P<uuid>{_UUID}|\b[0-9a-f]{{32}}\b)"
    r"|(?P<cut>[0-9a-f]{8}(?:-[0-9a-f]{0,12}){0,4}…)"  # a uuid demo.trace.sequence cut short
    r"|(?P<addr>\b(?:\d{1,3}(?:\.\d{1,3}){3}|localhost):)\d+"
    r"|(?P<pidkey>\b(?:child_)?p?pid\b['\"]?\s*[:=]?\s*|\bparent\s+)\d+"
    r"|(?P<fork>ForkPoolWorker-)\d+"
    r"|(?P<float>\b\d+\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<stamp>\b\d{10,}\b)"
)
# Not the story: the spy's own commands (demo.trace.sequence drops them too), and those of a sender
# the spy could not name ("unknown": a connection gone before the OS was asked, so whether
# it gets a name is timing); transaction framing; SCRIPT (whether a Lua script is already
# cached depends on which process used it first); the kit's own keys (xray:…).
_NOBODY = frozenset({names.SPY, names.UNKNOWN})
_FRAMING = frozenset({"MULTI", "EXEC", "DISCARD", "SCRIPT"})
_NOT_HOPS = frozenset({names.LOG, names.REDIS_COMMAND, names.REDIS_REPLY, names.EXPECTATION})
_HOP_DETAIL = {"task.event": "type", "result.stored": "status"}


class RenderError(ValueError):
    """A block that cannot be rendered from this trace (no such task, step or kind)."""


@dataclass(frozen=True)
class Normaliser:
    """Rewrites what varies between runs; built from the trace it will normalise."""

    tags: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Normaliser:
        tags, hosts = set(), set()
        for e in events:
            command = [str(a) for a in e.get("command") or ()]
            if len(command) > 2 and command[0].upper() == "HSET" and command[1] == names.UNACKED:
                tags.add(command[2])
            # A sender the spy could not name has its IP address as "host", not a host name.
            if e.get("host") and e.get("role") not in _NOBODY:
                hosts.add(str(e["host"]))
        return cls(frozenset(tags), frozenset(hosts))

    def text(self, value: object, limit: int = 0) -> str:
        """One line, normalised, then cut to `limit` characters (0: no cut)."""
        text = " ".join(str(value).split())
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
        for host in sorted(self.hosts, key=len, reverse=True):
            text = re.sub(rf"@{re.escape(host)}\b", "@<host>", text)
        text = _TOKENS.sub(self._token, text)
        return text if not limit or len(text) <= limit else text[: limit - 1] + "…"

    def _token(self, m: re.Match[str]) -> str:
        if m["uuid"]:
            return "<tag>" if m["uuid"] in self.tags else "<id>"
        if m["cut"]:
            return "<id>…"
        for group, placeholder in (("addr", "<port>"), ("pidkey", "<pid>"), ("fork", "<n>")):
            if m[group]:
                return m[group] + placeholder
        return "<t>"


def _kept_command(e: Event) -> bool:
    command = e.get("command") or [""]
    return (
        e.get("event") == names.REDIS_COMMAND
        and e.get("role") not in _NOBODY
        and str(command[0]).upper() not in _FRAMING
        and not (len(command) > 1 and str(command[1]).startswith(names.KIT_PREFIX))
    )


def _arg(norm: Normaliser, arg: str) -> str:
    """One command argument as the docs show it: payloads by kind, never by content."""
    if arg[:1] in "{[":
        return "<json>"
    text = norm.text(arg)
    return "<data>" if len(text) > 60 else text


def _dedupe(rows: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(rows))


def _cell(text: str) -> str:
    # Outside a code span Markdown would take "<id>" for an HTML tag and hide it.
    text = text if text.startswith("`") else text.replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def _rows(kind: str, rows: list[str]) -> list[str]:
    if not rows:
        raise RenderError(
            f"no {kind} in what this block selects (a step's window holds what happened "
            "during that step only, and leaves out the rows a timer repeats: BRPOP polling, "
            "heartbeats, kombu's upkeep)"
        )
    return _dedupe(rows)


def _table(kind: str, lang: str, rows: Iterable[tuple[str, str, str]]) -> str:
    header = HEADERS[kind][lang]
    lines = [f"| {' | '.join(header)} |", "| --- | --- | --- |"]
    lines += _rows(kind, [f"| {' | '.join(_cell(c) for c in row)} |" for row in rows])
    return "\n".join(lines)


def render_commands(events: Sequence[Event], norm: Normaliser, lang: str) -> str:
    rows = []
    for e in filter(_kept_command, events):
        args = [str(a) for a in e["command"]]
        name, rest = args[0].upper(), [_arg(norm, a) for a in args[1:]]
        key = rest[2] if name in ("EVAL", "EVALSHA") and len(rest) > 2 else rest[0] if rest else ""
        text = " ".join([name, *rest])
        shown = text if len(text) <= 100 else text[:99] + "…"
        why = annotate(str(e["role"]), name, key, lang) or norm.text(describe(args, lang))
        rows.append((str(e["role"]), f"`{shown}`", why))
    return _table("commands", lang, rows)


def render_logs(events: Sequence[Event], norm: Normaliser, lang: str) -> str:
    lines = [
        f"[{e.get('role', '?')}, {norm.text(e.get('process_name', '?'))}] "
        + norm.text(e.get("message", ""), 160)
        for e in events
        if e.get("event") == names.LOG
    ]
    return "\n".join(["```text", *_rows("logs", lines), "```"])


def render_hops(events: Sequence[Event], norm: Normaliser, lang: str) -> str:
    rows = []
    for e in events:
        hop = str(e.get("event", ""))
        if hop in _NOT_HOPS:
            continue
        detail = e.get(_HOP_DETAIL.get(hop, ""))
        shown = f"{hop} ({norm.text(detail)})" if detail else hop
        rows.append((str(e.get("role", "?")), f"`{shown}`", hop_meaning(hop, lang)))
    return _table("hops", lang, rows)


def render_mermaid(events: Sequence[Event], norm: Normaliser, lang: str) -> str:
    # Normalise the events first (demo.trace.sequence cuts labels to length), keeping pids
    # for lanes.
    def clean(e: Event) -> dict[str, Any]:
        out = {k: norm.text(v) if k in ("message", "summary", "key") else v for k, v in e.items()}
        if "command" in e:
            out["command"] = [_arg(norm, str(a)) for a in e["command"]]
        return out | {"task_id": "<id>"}

    seq = build_sequence([clean(e) for e in events], "<id>")
    _rows("arrows", [a.label for a in seq.arrows])
    # One lane per role, as demo.trace.sequence already does for clients and MainProcesses: which of
    # the pool's children ran a task, and whether the one that published it (a chain's
    # previous link) is the same, is the pool's choice, not the task's story.
    keys = {
        p.key: p.key.rsplit("-", 1)[0] if p.kind in ("child", "other") else p.key
        for p in seq.participants
    }
    lanes = {keys[p.key]: norm.text(p.label) for p in reversed(seq.participants)}
    seq.participants = [Participant(k, lanes[k]) for k in dict.fromkeys(keys.values())]
    seq.arrows = [
        replace(a, src=keys[a.src], dst=keys[a.dst], label=norm.text(split_timing(a.label)[0]))
        for a in seq.arrows
    ]
    return f"```mermaid\n{to_mermaid(seq)}```"


def render_expectations(checks: Sequence[Event], lang: str) -> str:
    """`- ✔ claim` for each expectation a step checked (✘ for one that did not hold)."""
    return "\n".join(_dedupe(f"- {'✔' if e['held'] else '✘'} {e['claim']}" for e in checks))


# kind -> renderer of the events a block selected; "expectations" is rendered apart.
RENDERERS: dict[str, Callable[[Sequence[Event], Normaliser, str], str]] = {
    "commands": render_commands,
    "logs": render_logs,
    "hops": render_hops,
    "mermaid": render_mermaid,
}
