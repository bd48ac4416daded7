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
        {"CELERY_VISIBILITY_TIMEOUT": "0"},
        {"CELERY_UNACKED_RESTORE_INTERVAL": "soon"},
        {"MAIL_RATE_LIMIT": "fast"},
        {"MAIL_RATE_LIMIT": "2/day"},
        {"CELERY_TRACK_STARTED": "sometimes"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_retry_delay_doubles_and_is_capped() -> None:
    settings = Settings(mail_retry_backoff=2, mail_retry_backoff_max=5)
    assert [settings.mail_retry_delay(n) for n in range(4)] == [2, 4, 5, 5]


def test_visibility_timeout_and_sweep_reach_the_transport_options() -> None:
    from envoi_mails.factory import transport_options

    plain = transport_options(Settings.from_env({}))
    assert "visibility_timeout" not in plain and "unacked_restore_interval" not in plain
    env = {"CELERY_VISIBILITY_TIMEOUT": "3", "CELERY_UNACKED_RESTORE_INTERVAL": "0.5"}
    options = transport_options(Settings.from_env(env))
    assert options["visibility_timeout"] == 3.0
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (0.5, 1)


def test_the_teaching_switches_default_to_celery_and_kombu_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.visibility_timeout, settings.unacked_restore_interval) == (None, None)
    assert (settings.mail_rate_limit, settings.mail_queue) == (None, None)
    assert settings.default_queue == "celery"
    assert settings.track_started is False


def test_the_teaching_switches_are_read_from_the_environment() -> None:
    env = {
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "MAIL_RATE_LIMIT": "1/s",
        "MAIL_QUEUE": "mails",
        "CELERY_DEFAULT_QUEUE": "default",
        "CELERY_TRACK_STARTED": "1",
        "BEAT_EVERY": "1",
    }
    settings = Settings.from_env(env)
    assert (settings.visibility_timeout, settings.unacked_restore_interval) == (4, 1)
    assert (settings.mail_rate_limit, settings.mail_queue) == ("1/s", "mails")
    assert (settings.default_queue, settings.track_started, settings.beat_every) == (
        "default",
        True,
        1,
    )


def test_the_app_passes_them_to_celery() -> None:
    from envoi_mails.factory import MAIL_TASK, TICK_TASK, create_app

    routed = Settings.from_env({"MAIL_QUEUE": "mails", "CELERY_DEFAULT_QUEUE": "default"})
    conf = create_app(routed).conf
    assert conf.task_routes == {MAIL_TASK: {"queue": "mails"}}
    assert conf.task_default_queue == "default"
    assert conf.beat_schedule["tick"]["task"] == TICK_TASK
    assert create_app(Settings.from_env({})).conf.task_routes == {}
