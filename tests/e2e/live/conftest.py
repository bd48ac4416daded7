"""A real browser for the live page's tests: Debian's Chromium, driven by Playwright
(demo.bench.browser). Where there is no browser, or no Playwright, the browser tests skip
with a one-line reason (`.ci/run` installs chromium when it runs as root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from demo.bench import browser as chromium
from demo.live.launch import OFF, LiveView, start_live
from demo.stack.stack import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    why = chromium.missing()
    if why is not None:
        pytest.skip(f"browser tests: {why}")
    with chromium.launched() as launched:
        yield launched


@pytest.fixture
def live(stack: Stack, tmp_path: Path) -> Iterator[LiveView]:
    """The live page on the test stack's Redis (no terminal feed: the page is under test)."""
    view = start_live(stack.broker_url, mode=OFF, state_dir=tmp_path)
    yield view
    view.close()
