"""The tutorial's Celery app: `celery -A envoi_mails worker --loglevel=info` finds `app` here.

`from envoi_mails import app, envoi_mail, add` builds the app from the environment on first
use, not when a submodule such as `envoi_mails.settings` is imported: the kit reads settings
before it knows which Redis the app must talk to.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoi_mails.instance import app, settings
    from envoi_mails.tasks import (
        add,
        envoi_mail,
        envoi_mail_late,
        fail,
        flaky,
        get_inside,
        slow,
        slow_late,
        slow_retried,
        slow_tidy,
        tick,
        tsum,
        whoami,
    )

_HOME = {
    "app": "instance",
    "settings": "instance",
    "add": "tasks",
    "envoi_mail": "tasks",
    "envoi_mail_late": "tasks",
    "fail": "tasks",
    "flaky": "tasks",
    "get_inside": "tasks",
    "slow": "tasks",
    "slow_late": "tasks",
    "slow_retried": "tasks",
    "slow_tidy": "tasks",
    "tick": "tasks",
    "tsum": "tasks",
    "whoami": "tasks",
}

__all__ = [
    "add",
    "app",
    "envoi_mail",
    "envoi_mail_late",
    "fail",
    "flaky",
    "get_inside",
    "settings",
    "slow",
    "slow_late",
    "slow_retried",
    "slow_tidy",
    "tick",
    "tsum",
    "whoami",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'envoi_mails' has no attribute {name!r}")
    if name == "app":
        importlib.import_module("envoi_mails.tasks")  # the worker must see every task
    return getattr(importlib.import_module(f"envoi_mails.{_HOME[name]}"), name)
