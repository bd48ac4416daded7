"""The mail task against an SMTP server that is down: bounded retries, never a duplicate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.stack.procs import free_port, wait_until
from demo.stack.smtp_sink import SmtpSink
from demo.stack.stack import Stack
from demo.stack.worker import Worker


@pytest.fixture
def dead_smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    """An SMTP sink on its own port and folder, not started: the test starts it when it wants."""
    sink = SmtpSink(free_port(), tmp_path / "mails")
    yield sink
    sink.stop()


def _worker_for(stack: Stack, sink: SmtpSink, name: str, **env: str) -> Worker:
    return stack.start_worker(
        name,
        extra=["-c", "1", "-Q", name],
        env={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), **env},
    )


def test_smtp_down_then_back_retries_and_delivers_exactly_once(
    stack: Stack, dead_smtp: SmtpSink
) -> None:
    from envoi_mails import envoi_mail

    worker = _worker_for(
        stack,
        dead_smtp,
        "smtp-late",
        MAIL_MAX_RETRIES="8",
        MAIL_RETRY_BACKOFF="0.3",
        MAIL_RETRY_BACKOFF_MAX="1",
    )
    try:
        result = envoi_mail.apply_async(args=["destinataire@example.com"], queue="smtp-late")
        wait_until(lambda: result.state == "RETRY", 15, "the task waiting to retry")
        dead_smtp.start()
        value = result.get(timeout=30)
    finally:
        worker.stop()

    assert value["tries"] >= 2
    assert [m.message_id for m in dead_smtp.mails()] == [f"<{result.id}@envoi-mails>"]


def test_smtp_down_for_good_fails_with_a_clear_error(stack: Stack, dead_smtp: SmtpSink) -> None:
    from envoi_mails import envoi_mail

    worker = _worker_for(
        stack, dead_smtp, "smtp-dead", MAIL_MAX_RETRIES="1", MAIL_RETRY_BACKOFF="0.1"
    )
    try:
        result = envoi_mail.apply_async(args=["destinataire@example.com"], queue="smtp-dead")
        error = result.get(timeout=30, propagate=False)
    finally:
        worker.stop()

    assert result.state == "FAILURE"
    assert type(error).__name__ == "SmtpUnavailable"
    assert "unreachable" in str(error) and "gave up after 2 tries" in str(error)
    assert dead_smtp.mails() == []


def test_a_sink_with_latency_keeps_the_mail_and_replies_no_sooner(tmp_path: Path) -> None:
    """The soak's sink waits before each 250, as a real server's checks do: that is what
    keeps its pool children busy when a kill comes due."""
    import smtplib
    import time

    sink = SmtpSink(free_port(), tmp_path / "mails", latency_s=0.3).start()
    try:
        began = time.monotonic()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            message = "Message-ID: <lent@envoi-mails>\r\nSubject: lent\r\n\r\ncorps\r\n"
            smtp.sendmail("a@example.com", ["b@example.com"], message)
        waited = time.monotonic() - began
    finally:
        sink.stop()
    assert waited >= 0.3
    assert [m.message_id for m in sink.mails()] == ["<lent@envoi-mails>"]
