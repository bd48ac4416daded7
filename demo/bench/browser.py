"""A real browser for the live page: Debian's Chromium, driven by Playwright.

`playwright install` downloads a browser build, which machines without that network access
cannot: the kit drives the system's chromium instead (`apt-get install chromium`). Used by
`demo bench-live` and by the browser tests (tests/e2e/live/).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from demo.errors import KitError

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


def missing() -> str | None:
    """Why no browser can be driven here (one line), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium() is None:
        return "no chromium: /usr/bin/chromium is missing (apt-get install chromium)"
    return None


def chromium() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


@contextlib.contextmanager
def launched() -> Iterator[Browser]:
    """Chromium, headless, for the block (KitError saying why if it cannot be)."""
    why = missing()
    if why is not None:
        raise KitError(f"cannot drive a browser: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
