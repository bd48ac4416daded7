"""`demo bench --variant NAME=VAR=VALUE[,VAR=VALUE…]`: one more lane, with its own environment.

Why: on this kind of machine a figure drifts by a few percent from one run to the next (the
same traced build measured +6.0 %, +7.6 % and +8.2 % on three days), which is as large as
most changes one would try. A variant runs in the same run as plain and traced, chunk by
chunk beside them, so its figure and theirs share the drift. `--variant hops=XRAY_COMMANDS=0`
measures the trace without command capture; `--variant aa=XRAY_TRACE=0` is an A/A check
(plain against plain), whose figure is the bench's own noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from demo.bench.report import MODES, setting
from envoi_mails.settings import Settings, SettingsError

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,19}")
_VAR = re.compile(r"[A-Z_][A-Z0-9_]*")
# The lane's own Redis: a variant that pointed elsewhere would measure another server.
_LANE_OWNED = frozenset({"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"})


class VariantError(ValueError):
    """A --variant the bench cannot run, with what to write instead."""


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def traced(self) -> bool:
        """Whether the lane's processes trace (and must write to the stream)."""
        return Settings.from_env(self.env).xray_trace

    @property
    def label(self) -> str:
        return f"{self.name} ({setting(self.env)})"


def parse(text: str) -> Variant:
    """`NAME=VAR=VALUE[,VAR=VALUE…]` as a Variant; VariantError says what is wrong."""
    name, _, rest = text.partition("=")
    usage = "write NAME=VAR=VALUE[,VAR=VALUE…], for example hops=XRAY_COMMANDS=0"
    if not _NAME.fullmatch(name):
        raise VariantError(f"{text!r}: the name must be 1-20 of a-z 0-9 _ -; {usage}")
    if name in MODES:
        raise VariantError(f"{text!r}: {name!r} is one of the bench's own modes; pick another")
    env: dict[str, str] = {}
    for pair in rest.split(","):
        var, equals, value = pair.partition("=")
        if not equals or not _VAR.fullmatch(var):
            raise VariantError(f"{text!r}: {pair!r} is not VAR=VALUE; {usage}")
        if var in _LANE_OWNED:
            raise VariantError(f"{text!r}: {var} is the lane's own Redis; the bench sets it")
        env[var] = value
    try:  # a value the app would refuse is refused here, before any lane starts
        Settings.from_env(env)
    except SettingsError as error:
        raise VariantError(f"{text!r}: {error}") from None
    return Variant(name, env)


def check_unique(variants: list[Variant]) -> None:
    names = [v.name for v in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VariantError(f"--variant {twice[0]!r} is given twice: name each variant once")
