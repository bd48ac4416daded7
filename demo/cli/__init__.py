"""`python -m demo …`: the kit's commands, one module each. Failures print one line and exit 1.

This package is the only place that imports click.
"""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """celery-xray: watch Celery's internals on a real Redis, worker and SMTP server."""


def _register() -> None:
    # Each command lives in its own module; they are imported here, once, to be listed.
    from demo.cli.bench import bench_capture_command, bench_command, bench_flush_command
    from demo.cli.bench_live import bench_live_command
    from demo.cli.inspect import inspect_command
    from demo.cli.live import live_command
    from demo.cli.soak import soak_command
    from demo.cli.spy import spy_command
    from demo.cli.trace import trace_command
    from demo.cli.tutorial import mails, result, send
    from demo.cli.up import up

    for command in (
        up,
        mails,
        send,
        result,
        bench_command,
        bench_capture_command,
        bench_flush_command,
        bench_live_command,
        inspect_command,
        soak_command,
        live_command,
        spy_command,
        trace_command,
    ):
        main.add_command(command)


_register()
