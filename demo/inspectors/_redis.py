"""What every view shares: kombu's defaults, bounded SCAN, and reading raw replies."""

from __future__ import annotations

from typing import cast

import redis

# kombu's defaults (kombu/transport/redis.py): PRIORITY_STEPS and visibility_timeout.
PRIORITY_STEPS = (0, 3, 6, 9)
VISIBILITY_TIMEOUT_S = 3600.0
SCAN_COUNT = 500  # keys per SCAN call: few round trips, each one short for the server
_SIZE = {"string": "strlen", "list": "llen", "hash": "hlen", "set": "scard", "zset": "zcard"}
_SIZE["stream"] = "xlen"


def _str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first(limit: int) -> tuple[int, int]:
    """Range of the first `limit` elements; (0, -1) would mean all, so 0 gives (1, 0)."""
    return (0, limit - 1) if limit > 0 else (1, 0)


def _scored(pairs: object) -> list[tuple[str, float]]:
    """ZRANGE … WITHSCORES as (member, score) pairs."""
    return [(_str(m), float(s)) for m, s in cast("list[tuple[object, float]]", pairs)]


def scan_keys(r: redis.Redis, match: str, limit: int) -> tuple[list[str], bool]:
    """Up to `limit` key names matching, sorted, and whether more exist."""
    found: set[str] = set()  # SCAN may return a key twice while the table is rehashed
    for key in r.scan_iter(match=match, count=SCAN_COUNT):
        if len(found) >= limit and _str(key) not in found:
            return sorted(found), True
        found.add(_str(key))
    return sorted(found), False
