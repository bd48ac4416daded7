"""The emitter's buffer, without Redis: what it queues, and what it drops when it is full."""

from __future__ import annotations

import threading

from envoi_mails.xray import emitter

ME = {"role": "test", "pid": 1, "ppid": 0, "host": "h"}
OTHER = {"role": "other", "pid": 2, "ppid": 0, "host": "h"}


class _Held(emitter.Emitter):
    """Never starts its thread, never flushes: the buffer stays as emit left it."""

    def _start(self) -> None:
        self._thread = threading.current_thread()


def test_an_identity_is_queued_once_per_run_of_events_of_one_process() -> None:
    sink = _Held("redis://127.0.0.1:1/0")
    for n in range(3):
        sink.emit(ME, (float(n), "a", {}))
    sink.emit(OTHER, (3.0, "b", {}))
    sink.emit(ME, (4.0, "c", {}))
    assert list(sink._buffer) == [
        ME,
        (0.0, "a", {}),
        (1.0, "a", {}),
        (2.0, "a", {}),
        OTHER,
        (3.0, "b", {}),
        ME,
        (4.0, "c", {}),
    ]


def test_a_full_buffer_drops_new_events_and_keeps_the_identity_at_its_head() -> None:
    sink = _Held("redis://127.0.0.1:1/0")
    for n in range(emitter.BUFFER_MAX + 50):
        sink.emit(ME, (float(n), "a", {}))
    assert len(sink._buffer) == emitter.BUFFER_MAX and sink._buffer[0] is ME
    assert sink.dropped == 51  # the identity took one place
    assert sink._buffer[-1] == (float(emitter.BUFFER_MAX - 2), "a", {})


def test_a_url_redis_py_cannot_open_loses_the_batch_not_the_thread() -> None:
    # kombu accepts sentinel:// where redis-py's from_url raises ValueError: the flush
    # must count the batch as dropped and return, or the thread would die with it.
    sink = _Held("sentinel://127.0.0.1:26379/0")
    sink.emit(ME, (1.0, "a", {}))
    sink.flush()
    assert sink.dropped == 1 and not sink._buffer
