"""The spy CLI's recording: its events go into the trace stream in the app's one wire format."""

from __future__ import annotations

from typing import Any

from demo import names
from demo.spy.record import to_items
from envoi_mails.xray import wire

MAIN = {"role": names.WORKER_MAIN, "pid": 7542, "ppid": 1, "host": "h"}
LUA = {"role": names.LUA, "pid": None, "ppid": None, "host": None}


def _command(ts: float, who: dict[str, Any], *args: str, **extra: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "event": names.REDIS_COMMAND,
        **who,
        "addr": "127.0.0.1:5000",
        "db": 0,
        "command": list(args),
        "summary": "…",
        **extra,
    }


def test_recorded_events_read_back_whole_and_in_order_through_the_apps_decoder() -> None:
    events = [
        _command(1.0, MAIN, "BRPOP", "celery", "1"),
        _command(2.0, MAIN, "ZADD", names.UNACKED_INDEX, "1", "tag", task_id="t1"),
        _command(3.0, LUA, "del", names.UNACKED_MUTEX, via=names.LUA),
        _command(4.0, MAIN, "HDEL", names.UNACKED, "tag", task_id="t1"),
    ]
    assert wire.decode({wire.FIELD: wire.encode(to_items(events))}) == events


def test_events_of_one_process_are_written_after_one_identity() -> None:
    events = [_command(float(n), dict(MAIN), "LLEN", "celery") for n in range(3)]
    items = to_items(events)
    assert [type(item) for item in items] == [dict, tuple, tuple, tuple]
    assert items[0] == MAIN
