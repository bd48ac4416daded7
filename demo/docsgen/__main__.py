"""`python -m demo.docsgen [NN …]`: run scenarios, then rewrite the docs blocks they feed.

With no number, every scenario that a block of docs/**/*.md names. Each runs once, as a
learner would run it (`--no-pause --json-trace`, stdin closed, its own Redis and SMTP sink),
one after the other: they start real workers, and the machine may be small. If one exits
non-zero nothing is rewritten. Claim citations (`[NN · N. Step](…)`) of the scenarios run
are then checked against what those runs really checked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo import names
from demo.docsgen import (
    DOCS,
    ROOT,
    Event,
    cited_step,
    page_lang,
    pages,
    regenerate,
    scenario_script,
)
from demo.docsgen.blocks import BlockError, find_citations, scenarios_of
from demo.docsgen.headless import run_headless

TIMEOUT_S = 300


def run_scenario(number: str, workdir: Path) -> list[Event]:
    """Run one scenario; its trace events. SystemExit with its output if it fails."""
    script = scenario_script(number)
    started = time.monotonic()
    print(f"running {script.name} …", flush=True)
    try:
        run = run_headless(script, workdir, TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{script.name} did not finish within {TIMEOUT_S} s") from None
    if run.returncode != 0 or not run.events:
        raise SystemExit(
            f"{run.failure_report(4000)}: not one docs block was rewritten. "
            "Fix the scenario (or what it found), then run again."
        )
    print(f"  {script.name}: exit 0 in {time.monotonic() - started:.1f} s", flush=True)
    return [*run.events]


def check_citations(runs: dict[str, list[Event]]) -> list[str]:
    """Problems with the citations of the scenarios run: a link to no step's heading, a step
    the run lacks or that checked nothing, or an expectation of it that did not hold."""
    problems = []
    for page in pages():
        for c in find_citations(page.read_text(encoding="utf-8")):
            if c.scenario not in runs:
                continue
            step = cited_step(page, c)
            checks = [
                e
                for e in runs[c.scenario]
                if e.get("event") == names.EXPECTATION and e.get("step") == step
            ]
            where = f"{page.relative_to(ROOT)}:{c.line}: {c.scenario} · {c.step}"
            if not step:
                problems.append(f"{where}: {c.target} is not a step's heading")
            elif not checks:
                problems.append(f"{where}: no such step checked anything in this run")
            elif not all(e["held"] for e in checks):
                problems.append(f"{where}: an expectation of that step did not hold")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.docsgen", description=__doc__)
    parser.add_argument(
        "numbers", nargs="*", metavar="NN", help="scenarios to run (default: all cited)"
    )
    options = parser.parse_args(argv)
    texts = {page: page.read_text(encoding="utf-8") for page in pages()}
    try:
        numbers = options.numbers or scenarios_of(list(texts.values()))
    except BlockError as exc:
        raise SystemExit(f"docs: {exc}") from None
    if not numbers:
        print(f"no generated block in {DOCS}: nothing to do")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xray-docsgen-") as tmp:
        try:
            runs = {n: run_scenario(n, Path(tmp)) for n in numbers}
        except LookupError as exc:
            raise SystemExit(str(exc)) from None
    # Every page renders before any is written; a block that cannot be rendered keeps its
    # content, is reported, and makes the exit code 1: the others are still filled.
    fresh: dict[Path, str] = {}
    failed: list[str] = []
    for page, text in texts.items():
        errors: list[str] = []
        try:
            fresh[page] = regenerate(text, runs, page_lang(page), errors)
        except BlockError as exc:
            raise SystemExit(f"{page.relative_to(ROOT)}: {exc}") from None
        failed += [f"{page.relative_to(ROOT)}:{e}" for e in errors]
    changed = [page for page, text in fresh.items() if text != texts[page]]
    for page in changed:
        page.write_text(fresh[page], encoding="utf-8")
        print(f"rewrote {page.relative_to(ROOT)}")
    for message in failed:
        print(f"block not rendered: {message}", file=sys.stderr)
    problems = check_citations(runs)
    for problem in problems:
        print(f"citation: {problem}", file=sys.stderr)
    print(
        f"{len(changed)} page(s) rewritten, {len(numbers)} scenario(s) run in "
        f"{time.monotonic() - started:.1f} s"
    )
    return 1 if problems or failed else 0


if __name__ == "__main__":
    sys.exit(main())
