"""What `demo up` started, saved so that other commands in other terminals can find it.

One stack per state folder (XRAY_STATE_DIR, ./.xray by default): `demo up` holds the
folder's lock for its whole life, so a second one in the same folder refuses at once, and
never overwrites (then deletes) the running stack's state. The lock goes with the process,
however it ends, so a stale file never blocks a new stack. The state file is readable by
its owner only (0600): it holds Flower's password.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from demo.errors import KitError

STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"
BROKER = "CELERY_BROKER_URL"
CLIENT_VARIABLES = (BROKER, "CELERY_RESULT_BACKEND", "SMTP_HOST", "SMTP_PORT")


@contextlib.contextmanager
def claim(state_dir: Path) -> Iterator[None]:
    """Hold the folder's stack lock while the block runs; KitError if a stack holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a+") as lock:
        if not _lock(lock):
            raise KitError(_refusal(state_dir))
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _lock(file: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the state file's pid check still refuses
        return load(Path(file.name).parent) is None
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _refusal(state_dir: Path) -> str:
    running = load(state_dir)
    where = f"XRAY_STATE_DIR={state_dir.parent / 'another-stack'} python -m demo up"
    if running is None:
        head = f"another `demo up` is starting in {state_dir}"
    else:
        since = time.strftime("%H:%M:%S", time.localtime(running.get("started", 0)))
        head = (
            f"a stack is already running from {state_dir}: `demo up` pid {running['pid']} "
            f"since {since}, Redis {running['env'][BROKER]}"
        )
    return (
        f"{head}. Use it (its terminal shows what to type), stop it first (Ctrl-C in its "
        f"terminal), or give this one a folder of its own: {where}"
    )


def save(state_dir: Path, state: dict[str, Any]) -> Path:
    """Write the state for this process, readable by its owner only, in one rename."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    me = psutil.Process()
    state = {**state, "pid": me.pid, "started": me.create_time()}
    partial = path.with_suffix(f".{me.pid}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(state, indent=2))
    partial.replace(path)
    return path


def load(state_dir: Path) -> dict[str, Any] | None:
    """The running stack's state, or None if none is running (a stale file is ignored:
    its process is gone, or the pid now belongs to another process)."""
    path = state_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        process = psutil.Process(int(state["pid"]))
        alive = abs(process.create_time() - float(state["started"])) < 1
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return state if alive else None


def clear(state_dir: Path) -> None:
    """Remove the state file if this process wrote it."""
    path = state_dir / STATE_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


@dataclass(frozen=True)
class Target:
    """The Redis a command talks to, and why that one: every command says it."""

    env: dict[str, str]
    source: str
    from_stack: bool  # found in the state file, not named by the user

    @property
    def broker_url(self) -> str:
        return self.env[BROKER]

    def __str__(self) -> str:
        return f"Redis {self.broker_url} ({self.source})"

    @property
    def if_unreachable(self) -> str:
        """What to do when this Redis does not answer."""
        if self.from_stack:
            return (
                "the stack `python -m demo up` started is in trouble: look at its terminal, "
                "or start it again"
            )
        return (
            f"start it, or fix {BROKER} (without it, the kit's commands use the stack "
            "`python -m demo up` starts)"
        )


def target(state_dir: Path) -> Target:
    """The Redis named by CELERY_BROKER_URL if the user set it, else the running stack's."""
    running = load(state_dir)
    if os.environ.get(BROKER):
        env = {key: os.environ[key] for key in CLIENT_VARIABLES if os.environ.get(key)}
        source = BROKER
        if running is not None and running["env"][BROKER] != env[BROKER]:
            source += f"; the stack `demo up` started uses {running['env'][BROKER]}"
        return Target(env, source, from_stack=False)
    if running is not None:
        source = f"the stack `demo up` pid {running['pid']} started: {state_dir / STATE_FILE}"
        return Target(dict(running["env"]), source, from_stack=True)
    raise KitError(
        f"no stack is running from {state_dir}: start one with `python -m demo up` "
        f"(or set {BROKER} to your Redis)"
    )
