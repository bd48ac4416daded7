"""`python -m demo …`: the kit's commands. Failures print one line and exit 1."""

from __future__ import annotations

import json
import os
import signal
import threading

import click

from demo import state
from demo.config import KitConfig
from demo.errors import KitError, one_line_errors


@click.group()
def main() -> None:
    """celery-xray: watch Celery's internals on a real Redis, worker and SMTP server."""


@main.command()
@click.option("-c", "--concurrency", type=int, default=None, help="pool children (default: CPUs)")
@click.option("--flower/--no-flower", default=True, help="start Flower beside the worker")
@one_line_errors
def up(concurrency: int | None, flower: bool) -> None:
    """Start Redis, an SMTP sink, the tutorial's worker and Flower; Ctrl-C stops them all."""
    from demo.banner import banner
    from demo.stack.stack import Stack

    config = KitConfig.from_env()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    extra = ["-E"] + ([f"--concurrency={concurrency}"] if concurrency else [])
    with Stack(config, prefer_tutorial_ports=True) as stack:
        stack.start_worker(extra=extra)
        if flower:
            stack.start_flower()
        state.save(
            config.state_dir,
            {
                "pid": os.getpid(),
                "env": stack.env,
                "worker_pid": stack.workers[0].pid,
                "flower": stack.flower.url if stack.flower else None,
            },
        )
        click.echo(banner(stack))
        try:
            while not stop.wait(0.5):
                if stack.workers[0].proc and stack.workers[0].proc.poll() is not None:
                    raise KitError(f"the worker exited{stack.workers[0].log_tail()}")
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
            state.clear(config.state_dir)
            click.echo("\nstopping: Flower, worker, SMTP sink, Redis …")
    click.echo("stopped; nothing left running.")


@main.command()
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


@main.command()
@click.argument("destinataire")
@click.option("--timeout", default=60.0, help="seconds to wait for the result")
@one_line_errors
def send(destinataire: str, timeout: float) -> None:
    """Send one mail through the running stack: envoi_mail.apply_async(args=[DESTINATAIRE])."""
    from demo.tasks_client import send_mail

    env = state.stack_env(KitConfig.from_env().state_dir)
    click.echo(json.dumps(send_mail(env, destinataire, timeout), indent=2))


@main.command()
@click.argument("task_id")
@click.option("--timeout", default=10.0, help="seconds to wait for the result")
@one_line_errors
def result(task_id: str, timeout: float) -> None:
    """Fetch a task's result with nothing but its task_id, from this new process."""
    from demo.tasks_client import fetch_result

    env = state.stack_env(KitConfig.from_env().state_dir)
    click.echo(json.dumps(fetch_result(env, task_id, timeout), indent=2))


def _register() -> None:
    # Each command lives in its own module; they are imported here, once, to be listed.
    from demo.bench import bench_command
    from demo.inspectors_view import inspect_command
    from demo.spy_cli import spy_command
    from demo.trace_cli import trace_command

    for command in (bench_command, inspect_command, spy_command, trace_command):
        main.add_command(command)


_register()
