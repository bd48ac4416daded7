"""The app's settings: read from the environment, checked, and the retry delays they give."""

from __future__ import annotations

import pytest

from envoi_mails.settings import DEFAULT_BROKER_URL, Settings, SettingsError


def test_defaults_follow_the_tutorial() -> None:
    settings = Settings.from_env({})
    assert settings.broker_url == DEFAULT_BROKER_URL == "redis://localhost:6379/0"
    assert settings.result_backend == settings.broker_url
    assert (settings.smtp_host, settings.smtp_port) == ("localhost", 1025)
    assert settings.xray_trace is True


def test_result_backend_defaults_to_the_broker_url() -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": "redis://h:1/2"})
    assert settings.result_backend == "redis://h:1/2"


def test_xray_trace_zero_turns_tracing_off() -> None:
    assert Settings.from_env({"XRAY_TRACE": "0"}).xray_trace is False


@pytest.mark.parametrize(
    "env",
    [
        {"SMTP_PORT": "abc"},
        {"SMTP_PORT": "70000"},
        {"XRAY_TRACE": "maybe"},
        {"XRAY_LOG_FORMAT": "xml"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_retry_delay_doubles_and_is_capped() -> None:
    settings = Settings(mail_retry_backoff=2, mail_retry_backoff_max=5)
    assert [settings.mail_retry_delay(n) for n in range(4)] == [2, 4, 5, 5]
