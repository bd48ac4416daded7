"""A real browser for the live page's tests: Debian's Chromium, driven by Playwright.

`playwright install` downloads browsers, which this machine cannot: the tests use the
system's `/usr/bin/chromium` (`.ci/run` installs it when it runs as root). Where there is
no browser, or no Playwright, the browser tests skip with a one-line reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from demo.live.launch import OFF, LiveView, start_live
from demo.stack.stack import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that would reach the network by itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests: Playwright is not installed (pip install -e '.[dev]')")
    executable = CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or CHROMIUM)
    if not executable.exists():
        pytest.skip("browser tests: no /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(stack: Stack, tmp_path: Path) -> Iterator[LiveView]:
    """The live page on the test stack's Redis (no terminal feed: the page is under test)."""
    view = start_live(stack.broker_url, mode=OFF, state_dir=tmp_path)
    yield view
    view.close()
