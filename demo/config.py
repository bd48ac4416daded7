"""The kit's own settings: what to start, and where, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from envoi_mails.settings import DEFAULT_SMTP_PORT, Settings


@dataclass(frozen=True)
class KitConfig:
    """`broker_url`/`smtp_host` are None when the environment does not name them: the kit
    then starts its own Redis and SMTP sink."""

    broker_url: str | None
    result_backend: str | None
    smtp_host: str | None
    smtp_port: int
    flower_port: int
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KitConfig:
        env = os.environ if env is None else env
        app = Settings.from_env(env)  # validates the variables the app shares with the kit
        return cls(
            broker_url=env.get("CELERY_BROKER_URL") or None,
            result_backend=env.get("CELERY_RESULT_BACKEND") or None,
            smtp_host=env.get("SMTP_HOST") or None,
            smtp_port=app.smtp_port if env.get("SMTP_PORT") else DEFAULT_SMTP_PORT,
            flower_port=int(env.get("FLOWER_PORT") or 5555),
            state_dir=Path(env.get("XRAY_STATE_DIR") or Path.cwd() / ".xray"),
        )
