"""Errors the kit reports as one line: what is wrong, and what to do."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click


class KitError(RuntimeError):
    """A failure the CLI prints as one line (no traceback) before exiting non-zero."""


F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Turn the failures a user can cause into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # envoi_mails.settings does not build the app: importing it here is cheap and safe.
        from envoi_mails.settings import SettingsError

        try:
            return func(*args, **kwargs)
        except (KitError, SettingsError) as exc:
            message = str(exc)
        # Outside the except block, so the failed call's frames (and any pending
        # AsyncResult in them) are released now, not during interpreter shutdown.
        click.echo(f"error: {message}", err=True)
        sys.exit(1)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature
