"""`python -m demo up` (`./run demo`): the tutorial's stack in the foreground.

Exit codes: 0 when the user stopped it (Ctrl-C, SIGTERM, a closed terminal), 130 when that
came during start-up, 1 when a part failed (the message says which, and how it ended).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from demo.cli.errors import exit_interrupted, one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.stack import state

if TYPE_CHECKING:
    from demo.stack.stack import Stack


@click.command("up")
@click.option("-c", "--concurrency", type=int, default=None, help="pool children (default: CPUs)")
@click.option("--flower/--no-flower", default=True, help="start Flower beside the worker")
@click.option("--quiet", is_flag=True, help="print only what happens to the processes")
@click.option("--logs-only", is_flag=True, help="print only the worker's own log lines")
@click.option("--page/--no-page", default=True, help="serve the live page on 127.0.0.1")
@one_line_errors
def up(concurrency: int | None, flower: bool, quiet: bool, logs_only: bool, page: bool) -> None:
    """Start Redis, an SMTP sink, the tutorial's worker and Flower; Ctrl-C stops them all.

    Then show what each process does as it happens: in this terminal, and on a page."""
    config = KitConfig.from_env()
    with state.claim(config.state_dir):  # one stack per state folder: refuse a second one
        _up(config, concurrency, flower, Live(quiet=quiet, logs_only=logs_only, page=page))


@dataclass(frozen=True)
class Live:
    """How `demo up` shows what happens: the terminal's mode, and whether to serve the page."""

    quiet: bool
    logs_only: bool
    page: bool


def _up(config: KitConfig, concurrency: int | None, flower: bool, options: Live) -> None:
    from demo.live.launch import LiveView, start_live, terminal_mode
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
    live: LiveView | None = None
    started = False
    failure: KitError | None = None
    try:
        with stack:
            stack.start_worker(extra=extra)
            if flower:
                stack.start_flower(password=new_password())  # one per run, in the 0600 state
            live = start_live(
                stack.broker_url,
                mode=terminal_mode(quiet=options.quiet, logs_only=options.logs_only),
                page=options.page,
                flower=stack.flower.url if stack.flower else None,
                state_dir=config.state_dir,
            )
            state.save(
                config.state_dir,
                {
                    "env": stack.env,
                    "worker_pid": stack.workers[0].pid,
                    "flower": stack.flower.url if stack.flower else None,
                    "flower_user": FLOWER_USER if stack.flower else None,
                    "flower_password": stack.flower.password if stack.flower else None,
                    "live": live.url,
                },
            )
            # From the banner on, the stack is up: a signal stops it (exit 0), it no longer
            # interrupts a start-up. One that landed while the feed's thread started (after
            # the banner) used to be reported as "interrupted during start-up".
            started = True
            try:
                click.echo(banner(stack, live_url=live.url))
                live.stream()
                watch(stack, say=lambda line: click.echo(line, err=True))
            except KitError as exc:
                failure = exc
            finally:
                live.close()
                click.echo(f"\nstopping: {', '.join(part.title for part in stack.parts())} …")
    except KeyboardInterrupt:
        if live is not None and not started:
            live.close()
        if not started:
            exit_interrupted(f"\ninterrupted during start-up: {_what_is_left(stack)}")
    finally:
        state.clear(config.state_dir)
    click.echo(f"stopped: {_what_is_left(stack)}")
    if failure is not None:
        raise failure


def _what_is_left(stack: Stack) -> str:
    left = stack.left_running()
    return "nothing left running." if not left else f"still running: {', '.join(left)}"
