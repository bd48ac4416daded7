"""`python -m demo up` (`./run demo`): the tutorial's stack in the foreground.

Exit codes: 0 when the user stopped it (Ctrl-C, SIGTERM, a closed terminal), 130 when that
came during start-up, 1 when a part failed (the message says which, and how it ended).
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import click

from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.stack import state

if TYPE_CHECKING:
    from demo.stack.stack import Stack

INTERRUPTED = 128 + signal.SIGINT  # a shell's exit code for a job stopped by Ctrl-C


@click.command("up")
@click.option("-c", "--concurrency", type=int, default=None, help="pool children (default: CPUs)")
@click.option("--flower/--no-flower", default=True, help="start Flower beside the worker")
@one_line_errors
def up(concurrency: int | None, flower: bool) -> None:
    """Start Redis, an SMTP sink, the tutorial's worker and Flower; Ctrl-C stops them all."""
    config = KitConfig.from_env()
    with state.claim(config.state_dir):  # one stack per state folder: refuse a second one
        _up(config, concurrency, flower)


def _up(config: KitConfig, concurrency: int | None, flower: bool) -> None:
    from demo.render.banner import banner
    from demo.stack.flower import USER as FLOWER_USER
    from demo.stack.flower import new_password
    from demo.stack.stack import Stack
    from demo.stack.watch import watch

    # A closed terminal (SIGHUP) or `kill` (SIGTERM) stops the stack as Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    extra = ["-E"] + ([f"--concurrency={concurrency}"] if concurrency else [])
    stack = Stack(config, prefer_tutorial_ports=True)
    started = False
    failure: KitError | None = None
    try:
        with stack:
            stack.start_worker(extra=extra)
            if flower:
                stack.start_flower(password=new_password())  # one per run, in the 0600 state
            state.save(
                config.state_dir,
                {
                    "env": stack.env,
                    "worker_pid": stack.workers[0].pid,
                    "flower": stack.flower.url if stack.flower else None,
                    "flower_user": FLOWER_USER if stack.flower else None,
                    "flower_password": stack.flower.password if stack.flower else None,
                },
            )
            click.echo(banner(stack))
            started = True
            try:
                watch(stack, say=lambda line: click.echo(line, err=True))
            except KitError as exc:
                failure = exc
            finally:
                click.echo(f"\nstopping: {', '.join(part.title for part in stack.parts())} …")
    except KeyboardInterrupt:
        if not started:
            click.echo(f"\ninterrupted during start-up: {_what_is_left(stack)}")
            sys.exit(INTERRUPTED)
    finally:
        state.clear(config.state_dir)
    click.echo(f"stopped: {_what_is_left(stack)}")
    if failure is not None:
        raise failure


def _what_is_left(stack: Stack) -> str:
    left = stack.left_running()
    return "nothing left running." if not left else f"still running: {', '.join(left)}"
