"""The committed docs hold together: every page parses, every claim cites a scenario's page
and heading that exist, under the heading's own words, and the two claims tables agree. Whether
the cited steps held and the blocks match a fresh run is checked on real runs in
tests/e2e/test_docs_match_fresh_runs.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.docsgen import DOCS, cited_step, pages
from demo.docsgen.blocks import anchors, find_blocks, find_citations, headings, parse_claims

CLAIMS = [DOCS / "claims.md", DOCS / "fr" / "claims.md"]
TUTORIAL_CLAIMS = 13  # the popular tutorial's claims, numbered 1-13 in both tables


def test_every_docs_page_parses() -> None:
    for page in pages():
        find_blocks(page.read_text(encoding="utf-8"))  # raises BlockError naming the line


@pytest.mark.parametrize("page", CLAIMS, ids=lambda p: str(p.relative_to(DOCS)))
def test_claim_links_point_at_the_cited_scenarios_page_and_heading(page: Path) -> None:
    for row in parse_claims(page.read_text(encoding="utf-8")):
        for c in row.shown_by:
            path, _, fragment = c.target.partition("#")
            target = (page.parent / path).resolve()
            assert target.is_file(), f"{page.name}:{c.line}: {c.target} does not exist"
            assert target.name.startswith(f"{c.scenario}_"), f"{c.target} is not scenario {c}"
            if fragment:
                found = anchors(target.read_text(encoding="utf-8"))
                assert fragment in found, f"{page.name}:{c.line}: no heading #{fragment}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_a_step_link_reads_as_the_heading_it_points_to(page: Path) -> None:
    """`[NN · N. Title](NN_page.md#anchor)`: Title is that heading's text on the linked page, in
    its language (a French page links a French page, under its French title), and the
    heading is a step's, whose expectations block names the step the link cites."""
    for c in find_citations(page.read_text(encoding="utf-8")):
        path, _, fragment = c.target.partition("#")
        target = (page.parent / path).resolve()
        where = f"{page.relative_to(DOCS)}:{c.line}"
        assert target.is_file() and fragment, f"{where}: {c.target} is not a step's heading"
        heading = headings(target.read_text(encoding="utf-8")).get(fragment)
        assert heading == c.step, f"{where}: the link reads {c.step!r}, its heading {heading!r}"
        assert cited_step(page, c).split(". ")[0] == c.step.split(". ")[0], (
            f"{where}: no expectations block of step {c.step.split('.')[0]} under {c.target}"
        )


def test_claims_tables_cover_the_tutorials_claims_with_a_verdict_and_a_step() -> None:
    tables = {page: parse_claims(page.read_text(encoding="utf-8")) for page in CLAIMS}
    for page, rows in tables.items():
        numbers = [row.number for row in rows]
        assert numbers == list(range(1, len(rows) + 1)), f"{page.name}: rows {numbers}"
        assert len(rows) >= TUTORIAL_CLAIMS, f"{page.name}: {len(rows)} claims"
        for row in rows:
            assert row.verdict in {"accurate", "partly", "wrong"}, f"{page.name} #{row.number}"
            assert row.shown_by, f"{page.name} #{row.number} cites no step"
            assert row.happens and row.claim
    (en_page, en), (fr_page, fr) = tables.items()
    assert [(r.verdict, {cited_step(en_page, c) for c in r.shown_by}) for r in en] == [
        (r.verdict, {cited_step(fr_page, c) for c in r.shown_by}) for r in fr
    ], "the French table must give the same verdicts and cite the same steps"
