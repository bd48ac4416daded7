"""What `demo up` started, saved so that other commands in other terminals can find it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil

from demo.errors import KitError

STATE_FILE = "stack.json"


def save(state_dir: Path, state: dict[str, Any]) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    path.write_text(json.dumps(state, indent=2))
    return path


def load(state_dir: Path) -> dict[str, Any] | None:
    """The running stack's state, or None if none is running (a stale file is ignored)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    if not psutil.pid_exists(int(state.get("pid", 0))):
        return None
    return state


def clear(state_dir: Path) -> None:
    path = state_dir / STATE_FILE
    if path.exists() and json.loads(path.read_text()).get("pid") == os.getpid():
        path.unlink()


def stack_env(state_dir: Path) -> dict[str, str]:
    """The env of the running stack, else the process environment (a Redis named by the user)."""
    state = load(state_dir)
    if state is not None:
        return dict(state["env"])
    if os.environ.get("CELERY_BROKER_URL"):
        return {
            key: os.environ[key]
            for key in ("CELERY_BROKER_URL", "SMTP_HOST", "SMTP_PORT")
            if key in os.environ
        }
    raise KitError(
        "no stack is running: start one with `python -m demo up` "
        "(or set CELERY_BROKER_URL to your Redis)"
    )
