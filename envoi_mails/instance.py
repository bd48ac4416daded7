"""The one app instance, built from the environment when `envoi_mails` is imported."""

from __future__ import annotations

from envoi_mails.factory import create_app
from envoi_mails.settings import Settings

settings = Settings.from_env()
app = create_app(settings)

if settings.xray_trace:
    from envoi_mails import xray

    xray.install(app, settings)
