"""Find, parse and replace the generated blocks of a docs page; read its claim citations and
which step each of its headings stands for.

Pure text functions, no I/O. A block is

    <!-- xray:begin KIND scenario=NN [task=NAME[#N]] [step="TITLE"] [lang=en|fr] -->
    …generated content…
    <!-- xray:end -->

and only the content between the two markers is ever rewritten: the hand-written page around
it, and the begin line itself, stay byte for byte as their author left them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

KINDS = ("mermaid", "commands", "logs", "hops", "expectations")
LANGS = ("en", "fr")
_BEGIN = re.compile(r"<!-- xray:begin (?P<head>[^\n]*?) ?-->")
_END = "<!-- xray:end -->"
_ATTR = re.compile(r'(?P<name>[a-z]+)=(?:"(?P<quoted>[^"\n]*)"|(?P<bare>[^\s"]+))')
_TASK = re.compile(r"(?P<name>[\w.]+)(?:#(?P<nth>[1-9]\d*))?")
# A claim cites a step as a Markdown link: [02 · 3. A worker takes it](02_send_one_mail.md#…)
_CITATION = re.compile(r"\[(?P<scenario>\d{2}) · (?P<step>\d+\. [^\]\n]+)\]\((?P<target>[^)\s]+)\)")
# Verdicts as written in the claims tables, in either language, to the canonical three.
VERDICTS = {"accurate": "accurate", "partly": "partly", "wrong": "wrong"}
VERDICTS |= {"exact": "accurate", "en partie": "partly", "faux": "wrong"}


class BlockError(ValueError):
    """A malformed block: the message names the line, so the page's author can fix it."""


@dataclass(frozen=True)
class Block:
    """One generated block. `start`/`end` delimit its content (between the markers)."""

    kind: str
    scenario: str
    task: str | None  # a task name, as published ("envoi_mail" or "envoi_mails.envoi_mail")
    nth: int  # which task of that name, in publishing order (1 = the first)
    step: str | None
    lang: str | None  # None: the page's language
    line: int  # 1-based line of the begin marker
    start: int
    end: int
    content: str


@dataclass(frozen=True)
class Citation:
    scenario: str
    step: str  # the link's text: the heading it points to, in that page's language
    target: str  # the link's target, e.g. "02_send_one_mail.md#3-a-worker-takes-it"
    line: int


@dataclass(frozen=True)
class ClaimRow:
    number: int
    claim: str
    verdict: str  # canonical: accurate, partly or wrong
    happens: str
    shown_by: tuple[Citation, ...]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_head(head: str, line: int = 0) -> dict[str, str]:
    """`KIND scenario=NN …` → {"kind": KIND, "scenario": NN, …}; raises BlockError."""
    kind, _, rest = head.strip().partition(" ")
    if kind not in KINDS:
        raise BlockError(f"line {line}: unknown block kind {kind!r} (known: {', '.join(KINDS)})")
    attrs, leftover = {"kind": kind}, _ATTR.sub("", rest).strip()
    if leftover:
        raise BlockError(f"line {line}: cannot read {leftover!r} in block head {head!r}")
    for m in _ATTR.finditer(rest):
        if m["name"] not in ("scenario", "task", "step", "lang"):
            raise BlockError(f"line {line}: unknown attribute {m['name']!r}")
        attrs[m["name"]] = m["quoted"] if m["quoted"] is not None else m["bare"]
    if not re.fullmatch(r"\d{2}", attrs.get("scenario", "")):
        raise BlockError(f"line {line}: a block needs scenario=NN (two digits)")
    if attrs.get("lang", "en") not in LANGS:
        raise BlockError(f"line {line}: lang must be one of {', '.join(LANGS)}")
    if "task" in attrs and not _TASK.fullmatch(attrs["task"]):
        raise BlockError(f"line {line}: task must be NAME or NAME#N, not {attrs['task']!r}")
    if kind == "expectations" and "step" not in attrs:
        raise BlockError(f'line {line}: an expectations block needs step="N. Title"')
    return attrs


def find_blocks(text: str) -> list[Block]:
    """Every block of a page, in page order; raises BlockError on a malformed one."""
    blocks: list[Block] = []
    pos = 0
    while (m := _BEGIN.search(text, pos)) is not None:
        line = _line_of(text, m.start())
        attrs = parse_head(m["head"], line)
        end = text.find(_END, m.end())
        nested = _BEGIN.search(text, m.end(), end if end >= 0 else len(text))
        if end < 0 or nested is not None:
            raise BlockError(f"line {line}: block {attrs['kind']} has no {_END} before the next")
        task = _TASK.fullmatch(attrs["task"]) if "task" in attrs else None
        blocks.append(
            Block(
                kind=attrs["kind"],
                scenario=attrs["scenario"],
                task=task["name"] if task else None,
                nth=int(task["nth"] or 1) if task else 1,
                step=attrs.get("step"),
                lang=attrs.get("lang"),
                line=line,
                start=m.end(),
                end=end,
                content=text[m.end() : end],
            )
        )
        pos = end + len(_END)
    stray = text.count(_END) - len(blocks)
    if stray:
        raise BlockError(f"{stray} {_END} marker(s) without a begin marker")
    return blocks


def wrap(content: str) -> str:
    """Content as stored between the markers: on its own lines, one newline either side."""
    return "\n" + content.strip("\n") + "\n"


def replace_blocks(text: str, render: Callable[[Block], str | None]) -> str:
    """The page with each block's content replaced by `render(block)`; None keeps it."""
    out, pos = [], 0
    for block in find_blocks(text):
        fresh = render(block)
        out += [text[pos : block.start], block.content if fresh is None else wrap(fresh)]
        pos = block.end
    return "".join([*out, text[pos:]])


def content_rows(content: str) -> frozenset[str]:
    """A block's content as a set of non-blank lines: what a fresh run must reproduce.

    A set, not a list: the order between processes (the client's GET against the child's
    SETEX, say) and how often a row repeats may change from run to run; which rows exist may not.
    """
    return frozenset(line.strip() for line in content.splitlines() if line.strip())


def find_citations(text: str) -> list[Citation]:
    """Every `[NN · N. Step title](target)` link of a page."""
    return [
        Citation(m["scenario"], m["step"].strip(), m["target"], _line_of(text, m.start()))
        for m in _CITATION.finditer(text)
    ]


def _cells(line: str) -> list[str]:
    # A cell may hold `a \| b`: split only on unescaped pipes.
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def parse_claims(text: str) -> list[ClaimRow]:
    """The rows of the claims table: `| # | claim | verdict | what really happens | shown by |`."""
    rows: list[ClaimRow] = []
    for number, line in enumerate(text.splitlines(), 1):
        cells = _cells(line) if line.lstrip().startswith("|") else []
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        verdict = VERDICTS.get(cells[2].strip("*_ ").lower(), "")
        shown = tuple(replace(c, line=number) for c in find_citations(cells[4]))
        rows.append(ClaimRow(int(cells[0]), cells[1], verdict, cells[3], shown))
    return rows


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


_HEADING = re.compile(r"^(?P<level>#{1,6}) +(?P<title>.+?) *#*$", re.MULTILINE)


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings (duplicates would get -1, -2…: not needed here)."""
    return set(headings(text))


def headings(text: str) -> dict[str, str]:
    """A page's headings by anchor: anchor → the heading's text."""
    return {anchor(m["title"]): m["title"] for m in _HEADING.finditer(text)}


def step_of_headings(text: str) -> dict[str, str]:
    """A walkthrough's `### N. Title` headings by anchor → the step their section checks: the
    `step=` of its first expectations block, which names the step as the scenario does (and
    as its run records it), whatever the page's language."""
    found: dict[str, str] = {}
    marks = list(_HEADING.finditer(text))
    blocks = [b for b in find_blocks(text) if b.kind == "expectations" and b.step]
    for m, after in zip(marks, [*marks[1:], None], strict=True):
        end = after.start() if after is not None else len(text)
        step = next((b.step for b in blocks if m.end() < b.start < end), None)
        if m["level"] == "###" and step is not None:
            found[anchor(m["title"])] = step
    return found


def scenarios_of(texts: Sequence[str]) -> list[str]:
    """The scenario numbers that the blocks of these pages name, sorted."""
    return sorted({block.scenario for text in texts for block in find_blocks(text)})
