"""Issue 15, case 7: `demo send` waits as long as the mail task may retry, not 60 s fixed."""

from __future__ import annotations

from demo.stack.client import send_timeout
from envoi_mails.settings import Settings


def test_the_default_retry_schedule_is_62_s_of_backoff_and_six_smtp_timeouts() -> None:
    settings = Settings()
    backoffs = sum(settings.mail_retry_delay(n) for n in range(settings.mail_max_retries))
    assert backoffs == 2 + 4 + 8 + 16 + 32 == 62
    assert settings.mail_retry_schedule_s() == 62 + 6 * settings.smtp_timeout


def test_send_waits_beyond_the_whole_schedule_as_the_environment_sets_it() -> None:
    for env in ({}, {"MAIL_MAX_RETRIES": "8", "MAIL_RETRY_BACKOFF_MAX": "120"}):
        settings = Settings.from_env(env)
        assert send_timeout(settings) > settings.mail_retry_schedule_s()
    assert send_timeout(Settings()) > 60  # the old fixed wait gave up during the last retry
