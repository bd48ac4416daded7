"""The tutorial's client side as commands: `send`, `result`, `mails`."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.stack import state


def _print_answer(ask: Callable[[state.Target], object]) -> None:
    """Print as JSON what `ask` answers about the Redis the command talks to, after a line
    on stderr naming that Redis. A failure stays one line, and names it too."""
    target = state.target(KitConfig.from_env().state_dir)
    try:
        answer = ask(target)
    except KitError as exc:
        raise KitError(f"{exc} [{target}]") from None
    click.echo(f"using {target}", err=True)
    click.echo(json.dumps(answer, indent=2))


@click.command()
@one_line_errors
def mails() -> None:
    """List the mails the SMTP sink kept."""
    from demo.stack.smtp_sink import read_mails

    folder = KitConfig.from_env().state_dir / "mails"
    found = read_mails(folder) if folder.exists() else []
    if not found:
        click.echo(f"no mail yet in {folder}")
    for mail in found:
        click.echo(
            f"{mail.path.name}  to={mail.recipients}  subject={mail.subject!r}  "
            f"id={mail.message_id}"
        )


@click.command()
@click.argument("destinataire")
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="seconds to wait for the result (default: the mail task's whole retry schedule)",
)
@one_line_errors
def send(destinataire: str, timeout: float | None) -> None:
    """Send one mail through the running stack: envoi_mail.apply_async(args=[DESTINATAIRE])."""
    from demo.stack.client import send_mail, send_timeout
    from envoi_mails.settings import Settings

    wait = send_timeout(Settings.from_env()) if timeout is None else timeout
    _print_answer(lambda target: send_mail(target, destinataire, wait))


@click.command()
@click.argument("task_id")
@click.option("--timeout", default=10.0, help="seconds to wait for the result")
@one_line_errors
def result(task_id: str, timeout: float) -> None:
    """Fetch a task's result with nothing but its task_id, from this new process."""
    from demo.stack.client import fetch_result

    _print_answer(lambda target: fetch_result(target, task_id, timeout))
