"""`python -m demo inspect`: a read-only snapshot of what Redis holds now."""

from __future__ import annotations

import os
from collections.abc import Sequence

import click
import redis
from rich.console import Console
from rich.markup import escape

from demo import inspectors as ins
from demo import names
from demo.cli.errors import one_line_errors
from demo.errors import KitError
from demo.render.inspect import render_snapshot
from demo.stack.state import Target


def default_queues(r: redis.Redis) -> list[str]:
    """`celery`, plus every queue bound for good (_kombu.binding_permanent.*)."""
    bound = {b.queue for b in ins.bindings(r).permanent if b.queue}
    return [names.DEFAULT_QUEUE, *sorted(bound - {names.DEFAULT_QUEUE})]


def _client(url: str, advice: str) -> redis.Redis:
    from demo.stack.redis_server import check_reachable  # imported late: fast `--help`

    check_reachable(url, advice=advice)  # a one-line KitError saying what to do when it is not
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def _take_snapshot(target: Target, peek: int, limit: int, names: Sequence[str]) -> ins.Snapshot:
    """Snapshot of `target`'s Redis; results from CELERY_RESULT_BACKEND when that names
    another Redis; the pool of the worker `demo up` started, if it uses this Redis."""
    import psutil

    from demo.config import KitConfig
    from demo.stack import state

    running = state.load(KitConfig.from_env().state_dir) or {}
    url = target.broker_url
    same = running.get("env", {}).get(state.BROKER) == url
    worker_pid = running.get("worker_pid") if same else None
    backend_url = target.env.get("CELERY_RESULT_BACKEND") or os.environ.get(
        "CELERY_RESULT_BACKEND", ""
    )
    r = _client(url, target.if_unreachable)
    other = backend_url.startswith(("redis://", "rediss://")) and backend_url != url
    backend = _client(backend_url, target.if_unreachable) if other else None
    try:
        alive = worker_pid if worker_pid and psutil.pid_exists(worker_pid) else None
        return ins.snapshot(r, names or default_queues(r), peek, limit, alive, backend)
    except redis.RedisError as exc:
        raise KitError(f"reading Redis at {url} failed: {exc}") from None
    finally:
        r.close()
        if backend is not None:
            backend.close()


@click.command("inspect")
@click.option(
    "--peek",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="messages shown per queue list",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="entries shown per table",
)
@click.option(
    "-Q",
    "--queue",
    "names",
    multiple=True,
    help="queue to show (default: celery and every permanently bound queue)",
)
@one_line_errors
def inspect_command(peek: int, limit: int, names: tuple[str, ...]) -> None:
    """Show, read-only, what Redis holds now: queues, unacked, results, bindings, kit keys."""
    from demo.config import KitConfig
    from demo.stack import state

    target = state.target(KitConfig.from_env().state_dir)
    snap = _take_snapshot(target, peek, limit, names)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a pipe or a file: the width the tables are made for
    console.print(f"[bold]{escape(str(target))}[/]", highlight=False)
    console.print(render_snapshot(snap))
