"""docs/fr mirrors docs/: one French page per English page, the same generated blocks.

The naming rule (docs/fr/README.md says it too): a walkthrough `docs/NN_<english>.md` has one
French page `docs/fr/NN_<french>.md`, same two-digit number, a French name; every other page
keeps its name (`docs/architecture.md` → `docs/fr/architecture.md`). The blocks of a pair are
filled by `python -m demo.docsgen` from the same run, so they may differ only where the
generator writes in the page's language: the header and the last column of a table. And there
they must differ: a row whose sentence reads the same in both is English left in the French
page. (Logs, diagrams and expectations are the same in both: they are what the terminal shows.)
Pure tests: no scenario runs (tests/e2e/test_docs_match_fresh_runs.py checks the blocks against
a fresh run).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from demo.docsgen import DOCS, page_lang, pages
from demo.docsgen.blocks import Block, anchors, content_rows, find_blocks, find_citations

FR = (DOCS / "fr").resolve()
_NUMBERED = re.compile(r"(?P<nn>\d{2})_[a-z0-9_]+\.md")
_STEP = re.compile(r"^### (?P<n>\d+)\. ", re.MULTILINE)
# A Markdown link or image target: [text](target). Reference definitions are not checked.
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_TABLES = ("commands", "hops")  # | role | command or hop | sentence in the page's language |


def english_pages() -> list[Path]:
    return [p for p in pages() if page_lang(p) == "en"]


def french_pages() -> list[Path]:
    return [p for p in pages() if page_lang(p) == "fr"]


def counterpart(page: Path) -> Path:
    """The French page of an English one, by the naming rule; FileNotFoundError if none."""
    numbered = _NUMBERED.fullmatch(page.name)
    found = [FR / page.name] if numbered is None else sorted(FR.glob(f"{numbered['nn']}_*.md"))
    if len(found) != 1 or not found[0].is_file():
        raise FileNotFoundError(f"{page.relative_to(DOCS)}: French pages found: {found}")
    return found[0]


def _pairs() -> list[object]:
    return [pytest.param(p, id=p.name) for p in english_pages()]


def _identity(block: Block) -> tuple[object, ...]:
    return (block.kind, block.scenario, block.task, block.nth, block.step)


def _split(block: Block, row: str) -> tuple[str, str]:
    """A row as (what it is, in no language; its words in the page's language, "" if none)."""
    if block.kind not in _TABLES:
        return row, ""  # logs, mermaid and expectations are rendered the same in both
    cells = re.split(r"(?<!\\)\|", row.strip("|"))
    # The header and the separator have no code span; every row of a table has one.
    if len(cells) != 3 or "`" not in cells[1]:
        return "", ""
    command = cells[1].strip().strip("`").split(" ")[0]
    return "|".join(cells[:2]).strip(), _words(cells[2].strip(), command)


def _words(text: str, command: str) -> str:
    """`text`, or "" when it says nothing in any language: describe's fallback for a command
    no rule knows is the command itself (`TIME`, `WATCH "unacked"`)."""
    return "" if text == command or text.startswith(f'{command} "') else text


def _language_free(block: Block) -> frozenset[str]:
    """A block's rows without what the generator words in the page's language."""
    return frozenset(key for key, _ in (_split(block, row) for row in _lines(block)) if key)


def _lines(block: Block) -> list[str]:
    return [line.strip() for line in block.content.splitlines() if line.strip()]


@pytest.mark.parametrize("page", _pairs())
def test_every_english_page_has_one_french_page(page: Path) -> None:
    counterpart(page)


def test_every_french_page_has_an_english_original() -> None:
    originals = {counterpart(p) for p in english_pages()}
    orphans = sorted(str(p.relative_to(DOCS)) for p in french_pages() if p not in originals)
    assert not orphans, f"French pages with no English page: {orphans}"


@pytest.mark.parametrize("page", _pairs())
def test_the_french_page_has_the_same_blocks(page: Path) -> None:
    french = counterpart(page)
    en, fr = find_blocks(page.read_text("utf-8")), find_blocks(french.read_text("utf-8"))
    assert [_identity(b) for b in fr] == [_identity(b) for b in en], (
        f"{french.name}: the blocks (kind, scenario, task, step) must be {page.name}'s, in order"
    )
    for b in en:
        assert b.lang in (None, "en"), f"{page.name}:{b.line}: lang={b.lang} on an English page"
    for e, f in zip(en, fr, strict=True):
        where = f"{french.name}:{f.line} ({f.kind}) against {page.name}:{e.line}"
        assert f.lang in (None, "fr"), f"{where}: lang={f.lang} on a French page"
        assert len(content_rows(f.content)) == len(content_rows(e.content)), (
            f"{where}: not the same number of rows: run `python -m demo.docsgen {e.scenario}`"
        )
        assert _language_free(f) == _language_free(e), (
            f"{where}: rows differ in more than their language: "
            f"run `python -m demo.docsgen {e.scenario}`"
        )


@pytest.mark.parametrize("page", _pairs())
def test_the_french_tables_are_worded_in_french(page: Path) -> None:
    """Each sentence the generator words in a table (what a command proves or describes,
    what a hop means) reads differently on the French page than on the English one, row for
    row (both come from the same run, in the same order)."""
    french = counterpart(page)
    en, fr = find_blocks(page.read_text("utf-8")), find_blocks(french.read_text("utf-8"))
    for e, f in zip(en, fr, strict=True):
        for en_row, fr_row in zip(_lines(e), _lines(f), strict=False):
            (en_key, en_words), (fr_key, fr_words) = _split(e, en_row), _split(f, fr_row)
            assert not (en_key == fr_key and en_words and fr_words == en_words), (
                f"{french.name}:{f.line} ({f.kind}): {fr_row!r} is the English row: give the "
                "generator its French (demo/protocol/phrases_fr.py, "
                "demo/docsgen/annotations.py)"
            )


@pytest.mark.parametrize("page", _pairs())
def test_the_french_page_has_the_same_steps(page: Path) -> None:
    steps = [m["n"] for m in _STEP.finditer(page.read_text("utf-8"))]
    french = counterpart(page)
    assert [m["n"] for m in _STEP.finditer(french.read_text("utf-8"))] == steps, (
        f"{french.name}: one `### N.` heading per step of {page.name}, in the same order"
    )


_SECTION = re.compile(r"^## ", re.MULTILINE)


@pytest.mark.parametrize("page", _pairs())
def test_the_french_page_has_every_section_of_the_english_one(page: Path) -> None:
    # docs/fr/architecture.md went without "Who sent each Redis command" for a while: a
    # French page may add a section of its own (its README explains its conventions), not
    # lack one.
    sections = len(_SECTION.findall(page.read_text("utf-8")))
    french = counterpart(page)
    found = len(_SECTION.findall(french.read_text("utf-8")))
    assert found >= sections, f"{french.name}: {found} `## ` sections, {page.name} has {sections}"


@pytest.mark.parametrize("page", [pytest.param(p, id=p.name) for p in pages()])
def test_relative_links_reach_a_page_and_its_heading(page: Path) -> None:
    for m in _LINK.finditer(page.read_text("utf-8")):
        target = m["target"]
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or a link within the page
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve()
        assert resolved.exists(), f"{page.relative_to(DOCS)}: {target} does not exist"
        if fragment and resolved.suffix == ".md":
            found = anchors(resolved.read_text("utf-8"))
            assert fragment in found, f"{page.relative_to(DOCS)}: {target}: no such heading"


def test_french_pages_link_to_french_pages() -> None:
    for page in french_pages():
        for m in _LINK.finditer(page.read_text("utf-8")):
            path = m["target"].partition("#")[0]
            if not path.endswith(".md") or re.match(r"[a-z]+:", path):
                continue
            resolved = (page.parent / path).resolve()
            english = resolved.is_relative_to(DOCS.resolve()) and not resolved.is_relative_to(FR)
            # Only the French map names the English originals, as such.
            assert not english or page.name == "README.md", (
                f"{page.relative_to(DOCS)}: links to the English {path}; link its French page"
            )


def test_the_french_claims_cite_french_pages() -> None:
    for c in find_citations((FR / "claims.md").read_text("utf-8")):
        path = c.target.partition("#")[0]
        assert "/" not in path, f"fr/claims.md:{c.line}: {c.target} is not a French page"


def test_the_french_map_lists_every_french_page() -> None:
    text = (FR / "README.md").read_text("utf-8")
    linked = {(FR / m["target"].partition("#")[0]).resolve() for m in _LINK.finditer(text)}
    pages_ = [p for p in french_pages() if p.name != "README.md"]
    missing = [p.name for p in pages_ if p.resolve() not in linked]
    assert not missing, f"docs/fr/README.md does not link to {missing}"
