"""The docs say what a fresh run shows: each generated block, and each claim's cited step.

These tests share the session's one run of each scenario (scenario_run, with
tests/e2e/test_scenarios.py): a block is regenerated from that run and must have the same rows
as the committed block, compared as sets (the order between processes may change between runs,
which rows exist may not). The pure tests of the generator are in tests/unit/test_docsgen.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demo.docsgen import DOCS, cited_step, page_lang, pages, render_block
from demo.docsgen.blocks import BlockError, content_rows, find_blocks, parse_claims
from scenario_runner import ScenarioRun

CLAIMS = [DOCS / "claims.md", DOCS / "fr" / "claims.md"]


def _blocks() -> list[Any]:
    params = []
    for page in pages():
        try:
            found = find_blocks(page.read_text(encoding="utf-8"))
        except BlockError:
            continue  # tests/unit/test_docs_pages.py names it
        for b in found:
            name = f"{page.relative_to(DOCS)}:{b.line}:{b.kind}"
            params.append(pytest.param(page, b, id=name, marks=pytest.mark.scenario(b.scenario)))
    return params


def _citations() -> list[Any]:
    return [
        pytest.param(
            page,
            c,
            id=f"{page.relative_to(DOCS)}:{c.scenario}·{c.step[:30]}",
            marks=pytest.mark.scenario(c.scenario),
        )
        for page in CLAIMS
        if page.exists()
        for row in parse_claims(page.read_text(encoding="utf-8"))
        for c in row.shown_by
    ]


@pytest.mark.timeout(400)
@pytest.mark.parametrize(("page", "block"), _blocks())
def test_generated_block_has_the_rows_of_a_fresh_run(
    page: Path, block: Any, scenario_run: Callable[[str], ScenarioRun]
) -> None:
    run = scenario_run(block.scenario)
    assert run.returncode == 0, run.failure_report()
    fresh = content_rows(render_block(block, run.events, page_lang(page)))
    committed = content_rows(block.content)
    hint = f"run `python -m demo.docsgen {block.scenario}` and review the diff"
    assert committed, f"the block is empty: {hint}"
    missing, extra = sorted(committed - fresh), sorted(fresh - committed)
    assert not missing and not extra, (
        f"committed rows this run lacks: {missing}\nrows only this run has: {extra}\n{hint}"
    )


@pytest.mark.timeout(400)
@pytest.mark.parametrize(("page", "citation"), _citations())
def test_cited_step_exists_and_all_its_expectations_held(
    page: Path, citation: Any, scenario_run: Callable[[str], ScenarioRun]
) -> None:
    run = scenario_run(citation.scenario)
    step = cited_step(page, citation)  # the scenario's own title, whatever the page's language
    checks = [e for e in run.expectations if e["step"] == step]
    steps = sorted({e["step"] for e in run.expectations})
    assert checks, f"{page.name}:{citation.line}: no step {step!r}; steps: {steps}"
    failed = [e["claim"] for e in checks if not e["held"]]
    assert not failed, f"{citation.scenario} · {step}: did not hold: {failed}"
