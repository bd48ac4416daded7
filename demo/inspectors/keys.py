"""The result backend's side, and any key's type, size and TTL: stored results (with the
TTL Celery gave them) and the kit's own keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis

from demo import names
from demo.inspectors._redis import _SIZE, _str, scan_keys
from demo.protocol.envelope import EnvelopeError, decode_result


@dataclass(frozen=True)
class StoredResult:
    task_id: str
    ttl_s: int | None  # seconds left; None when the key never expires
    status: str | None
    result: object
    date_done: str | None
    worker: str | None  # only with result_extended
    error: str | None = None  # why the value could not be decoded


@dataclass(frozen=True)
class KeyInfo:
    """A key shown by type and size only."""

    key: str
    type: str
    size: int | None  # STRLEN, LLEN, HLEN, SCARD, ZCARD or XLEN, by type
    ttl_s: int | None


@dataclass(frozen=True)
class ResultsView:
    results: tuple[StoredResult, ...]  # latest date_done first
    groups: tuple[KeyInfo, ...]  # celery-taskset-meta-<gid>[.j .t .s .d .c], chord-unlock-*
    truncated: bool  # SCAN found more result keys than `limit`


def _ttl(seconds: object) -> int | None:
    value = int(cast("int", seconds))
    return value if value >= 0 else None  # -1: the key never expires


def key_infos(r: redis.Redis, keys: Sequence[str]) -> tuple[KeyInfo, ...]:
    """Type, size and TTL of each key: TYPE and TTL, then one size command by type."""
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.ttl(key)
    answers = pipe.execute()
    kinds, ttls = [_str(kind) for kind in answers[0::2]], answers[1::2]
    sized = [(key, kind) for key, kind in zip(keys, kinds, strict=True) if kind in _SIZE]
    for key, kind in sized:
        getattr(pipe, _SIZE[kind])(key)
    sizes = dict(zip([key for key, _ in sized], pipe.execute(), strict=True))
    return tuple(
        KeyInfo(key, kind, sizes.get(key), _ttl(ttl))
        for key, kind, ttl in zip(keys, kinds, ttls, strict=True)
    )


def _stored(task_id: str, raw: object, ttl: object) -> StoredResult:
    try:
        meta = decode_result(_str(raw))
    except EnvelopeError as exc:
        return StoredResult(task_id, _ttl(ttl), None, None, None, None, str(exc))
    status, done, worker = meta["status"], meta.get("date_done"), meta.get("worker")
    return StoredResult(task_id, _ttl(ttl), str(status), meta.get("result"), done, worker)


def results(
    r: redis.Redis, limit: int = 50, task_ids: Sequence[str] = (), *, groups: bool = True
) -> ResultsView:
    """Stored results: those of `task_ids` when given, else up to `limit` keys SCAN finds
    (SCAN chooses which when there are more); plus up to `limit` group and chord keys
    (unless `groups` is False: finding them SCANs the whole keyspace)."""
    if task_ids:
        keys, truncated = [names.result_key(tid) for tid in task_ids][:limit], False
    else:
        keys, truncated = scan_keys(r, f"{names.RESULT_PREFIX}*", limit)
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    answers = pipe.execute()
    found = [
        _stored(key.removeprefix(names.RESULT_PREFIX), raw, ttl)
        for key, raw, ttl in zip(keys, answers[0::2], answers[1::2], strict=True)
        if raw is not None  # expired since SCAN, or no result for that id
    ]
    found.sort(key=lambda res: res.date_done or "", reverse=True)
    if not groups:
        return ResultsView(tuple(found), (), truncated)
    group_keys = (
        scan_keys(r, f"{names.GROUP_PREFIX}*", limit)[0]
        + scan_keys(r, f"{names.CHORD_UNLOCK_PREFIX}*", limit)[0]
    )
    return ResultsView(tuple(found), key_infos(r, group_keys[:limit]), truncated)


def kit_keys(r: redis.Redis, limit: int = 50) -> tuple[KeyInfo, ...]:
    """What celery-xray itself created (`xray:*`), by type, size and TTL."""
    return key_infos(r, scan_keys(r, f"{names.KIT_PREFIX}:*", limit)[0])
