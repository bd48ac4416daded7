"""The committed docs hold together: every page parses, every claim cites a scenario's page
and heading that exist, and the two claims tables agree. Whether the cited steps held and the
blocks match a fresh run is checked on real runs in tests/e2e/test_docs_match_fresh_runs.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.docsgen import DOCS, pages
from demo.docsgen.blocks import anchors, find_blocks, parse_claims

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
    en, fr = tables.values()
    assert [(r.verdict, {(c.scenario, c.step) for c in r.shown_by}) for r in en] == [
        (r.verdict, {(c.scenario, c.step) for c in r.shown_by}) for r in fr
    ], "the French table must give the same verdicts and cite the same steps"
