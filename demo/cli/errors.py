"""How a command reports a failure the user can fix: one line on stderr, exit code 1."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from demo.errors import KitError

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = 128 + signal.SIGINT  # a shell's exit code for a job stopped by Ctrl-C


def exit_interrupted(message: str) -> NoReturn:
    """After a Ctrl-C, once what the command started is stopped: say so, exit as a shell
    expects of a job stopped by Ctrl-C."""
    click.echo(message)
    sys.exit(INTERRUPTED)


def one_line_errors(func: F) -> F:
    """Turn the failures a user can cause (KitError, SettingsError) into one line on stderr
    and exit code 1, without a traceback."""

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
