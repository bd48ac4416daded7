"""The live page in a real browser, on real processes: a mail sent through the tutorial's own
line shows within 2 s with the child that ran it and its SETEX; a child killed with SIGKILL
shows replaced. Each test saves a screenshot under its tmp dir."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from demo.live.launch import LiveView
from demo.stack.stack import Stack
from demo.stack.worker import Worker

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SHOWN_WITHIN_S = 2.0  # the bar: from apply_async to the page showing it all
REPLACED_WITHIN_S = 15.0  # billiard reaps the child and forks another within a second or so
RESULT_S = 30
WIDTH, HEIGHT = 1280, 900  # a laptop's window
# The SETEX arrow drawn from a lane: data-src names the lane, <title> the command.
SETEX_FROM = """([lane]) => [...document.querySelectorAll('#diagram g.message')].some(
  g => g.dataset.src === lane && g.querySelector('title').textContent.startsWith('SETEX'))"""


def _ms_left(deadline: float) -> float:
    return max((deadline - time.monotonic()) * 1000, 1.0)


def _open(browser: Browser, live: LiveView) -> Page:
    assert live.url is not None
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.goto(live.url)
    page.wait_for_selector("#conn.live", timeout=10_000)
    return page


def test_a_mail_sent_through_the_tutorials_line_shows_with_its_child_and_setex_within_2_s(
    worker: Worker, live: LiveView, browser: Browser, tmp_path: Path
) -> None:
    from envoi_mails import envoi_mail

    page = _open(browser, live)
    sent = time.monotonic()
    r = envoi_mail.apply_async(args=["destinataire@example.com"])  # the tutorial's own line
    deadline = sent + SHOWN_WITHIN_S
    row = page.wait_for_selector(f'tr[data-task="{r.id}"]', timeout=_ms_left(deadline))
    assert row is not None
    pid = r.get(timeout=RESULT_S)["pid"]
    page.wait_for_selector(
        f'tr[data-task="{r.id}"][data-child="{pid}"].s-SUCCESS', timeout=_ms_left(deadline)
    )
    page.wait_for_selector(f'li.proc.child[data-pid="{pid}"]', timeout=_ms_left(deadline))
    page.click(f'tr[data-task="{r.id}"]')
    page.wait_for_function(SETEX_FROM, arg=[f"child-{pid}"], timeout=_ms_left(deadline))
    shown_after = time.monotonic() - sent
    page.screenshot(path=str(tmp_path / "live-mail.png"), full_page=True)
    assert shown_after <= SHOWN_WITHIN_S
    assert pid in worker.children()
    # The five lanes of the tutorial's flow fit the window: no horizontal scrolling.
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    lanes = page.eval_on_selector_all("#diagram g.box", "boxes => boxes.length")
    assert (overflow, lanes) == (0, 5)


def test_a_child_killed_with_sigkill_shows_exited_and_replaced(
    stack: Stack, live: LiveView, browser: Browser, tmp_path: Path
) -> None:
    # A worker of its own, on a queue of its own: no other test's task lands on it.
    victim_worker = stack.start_worker("live-kill", extra=["-c", "1", "-Q", "live-kill"])
    try:
        page = _open(browser, live)
        victim = victim_worker.children()[0]
        page.wait_for_selector(f'li.proc.child[data-pid="{victim}"]', timeout=10_000)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + REPLACED_WITHIN_S
        gone = page.wait_for_selector(
            f'li.proc.child.gone[data-pid="{victim}"]:not([data-replaced-by=""])',
            timeout=_ms_left(deadline),
        )
        assert gone is not None
        new = int(gone.get_attribute("data-replaced-by") or 0)
        page.wait_for_selector(f'li[data-replaces="{victim}"]', timeout=_ms_left(deadline))
        page.wait_for_selector(
            f'#feed li.happening.alarm[data-pid="{victim}"]', timeout=_ms_left(deadline)
        )
        page.screenshot(path=str(tmp_path / "live-child-replaced.png"), full_page=True)
        assert "signal 9 (SIGKILL)" in gone.inner_text()
        assert victim_worker.children() == [new]
    finally:
        victim_worker.stop()
        stack.workers.remove(victim_worker)
