"""`python -m demo up` (`./run demo`): the tutorial's stack in the foreground."""

from __future__ import annotations

import os
import signal
import threading

import click

from demo.cli.errors import one_line_errors
from demo.config import KitConfig
from demo.errors import KitError
from demo.stack import state


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
    from demo.live.launch import start_live, terminal_mode
    from demo.render.banner import banner
    from demo.stack.stack import Stack

    config = KitConfig.from_env()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    extra = ["-E"] + ([f"--concurrency={concurrency}"] if concurrency else [])
    with Stack(config, prefer_tutorial_ports=True) as stack:
        stack.start_worker(extra=extra)
        if flower:
            stack.start_flower()
        live = start_live(
            stack.broker_url,
            mode=terminal_mode(quiet=quiet, logs_only=logs_only),
            page=page,
            flower=stack.flower.url if stack.flower else None,
            state_dir=config.state_dir,
        )
        state.save(
            config.state_dir,
            {
                "pid": os.getpid(),
                "env": stack.env,
                "worker_pid": stack.workers[0].pid,
                "flower": stack.flower.url if stack.flower else None,
                "live": live.url,
            },
        )
        click.echo(banner(stack, live_url=live.url))
        live.stream()
        try:
            while not stop.wait(0.5):
                if stack.workers[0].proc and stack.workers[0].proc.poll() is not None:
                    raise KitError(f"the worker exited{stack.workers[0].log_tail()}")
        except KeyboardInterrupt:
            pass
        finally:
            live.close()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
            state.clear(config.state_dir)
            click.echo("\nstopping: Flower, worker, SMTP sink, Redis …")
    click.echo("stopped; nothing left running.")
