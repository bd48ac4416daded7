"""Running scenarios, announced so that the live page can follow one.

A scenario starts its own Redis: the page of `demo up` cannot see it on its own. While it
runs, a scenario leaves a small file in the state folder (`announce`); the page lists the
live ones (`running`) and follows the one chosen, on that scenario's Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console

from demo.stack import state

FOLDER = "scenarios-running"


@dataclass(frozen=True)
class Running:
    pid: int
    title: str
    broker_url: str
    started: float


def _folder(state_dir: Path) -> Path:
    return state_dir / FOLDER


@contextlib.contextmanager
def announce(state_dir: Path, title: str, broker_url: str) -> Iterator[None]:
    """While the block runs, this process is listed as a scenario on `broker_url`."""
    path = _folder(state_dir) / f"{os.getpid()}.json"
    record = {"title": title, "broker_url": broker_url, "started": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        written = True
    except OSError:  # a read-only state folder: the scenario runs all the same
        written = False
    try:
        yield
    finally:
        if written:
            path.unlink(missing_ok=True)


def running(state_dir: Path) -> list[Running]:
    """The scenarios running now, oldest first (a file left by a dead process is ignored)."""
    found = []
    for path in sorted(_folder(state_dir).glob("*.json")) if _folder(state_dir).is_dir() else []:
        try:
            pid, record = int(path.stem), json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(pid):
            started = float(record.get("started", 0.0))
            found.append(Running(pid, str(record["title"]), str(record["broker_url"]), started))
    return sorted(found, key=lambda r: r.started)


def find(state_dir: Path, pid: int) -> Running | None:
    return next((r for r in running(state_dir) if r.pid == pid), None)


@contextlib.contextmanager
def announced(state_dir: Path, title: str, broker_url: str, console: Console) -> Iterator[None]:
    """`announce`, and when a `demo up` serves its live page, say where to follow this run."""
    running = state.load(state_dir) or {}
    if running.get("live"):
        console.print(f"[dim]follow it live: {running['live']}/follow?pid={os.getpid()}[/]")
    with announce(state_dir, title, broker_url):
        yield
