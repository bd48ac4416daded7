"""What recording a Redis command costs the process that sends it, in µs per command.

A micro-benchmark of envoi_mails/xray/commands.py, in two parts, over the same mix of
commands (a kombu-sized LPUSH, a SETEX of a result, a BRPOP):

- on the caller's path: redis-py packing them through its own packer, then through the
  recording one (timeit's minimum of many short runs: the least-disturbed figure);
- off it: the emitter's flush encoding a batch of them (CPU time of the encoding).

Run: `python -m demo bench-capture`.
"""

from __future__ import annotations

import statistics
import threading
import time
import timeit
from dataclasses import dataclass
from typing import Any

from redis.connection import Connection

from demo.stack.procs import free_port
from envoi_mails.xray import commands, emitter, process, wire

ENVELOPE = '{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbH1d", ' + '"x": "' + "y" * 800 + '"}'
SAMPLE: tuple[tuple[Any, ...], ...] = (
    ("LPUSH", "celery", ENVELOPE),
    ("SETEX", "celery-task-meta-5f1c2f55-5d0e-4b8e-9a57-0f0a7f5e0c11", 86400, '{"status": 1}'),
    ("BRPOP", "celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169", 1),
)


@dataclass(frozen=True)
class CaptureCost:
    plain_us: float  # µs per command, packing only
    recorded_us: float  # µs per command, packing through the recording packer
    encode_us: float  # CPU µs per command for the flush's encoding

    @property
    def hot_us(self) -> float:
        return self.recorded_us - self.plain_us

    @property
    def cost_us(self) -> float:
        return self.hot_us + self.encode_us

    def line(self) -> str:
        return (
            f"capture: {self.cost_us:.2f} µs per command = {self.hot_us:.2f} µs on the "
            f"caller's path + {self.encode_us:.2f} µs encoding in the emitter's thread "
            f"(packing alone: {self.plain_us:.2f} µs; a mix of a 0.9 kB LPUSH, a SETEX, a BRPOP)"
        )


def _pack_us(packer: Any, count: int, repeat: int) -> float:
    """µs per command: the best of `repeat` runs of `count` packs."""

    def run() -> None:
        for i in range(count):
            packer.pack(*SAMPLE[i % len(SAMPLE)])

    return min(timeit.repeat(run, number=1, repeat=repeat)) * 1e6 / count


def _encode_us(peer: commands.Peer, count: int) -> float:
    """CPU µs per command that the emitter's flush spends encoding them."""
    batch: list[wire.Item] = [process.identity()]
    batch += [(0.0, commands.EVENT, SAMPLE[i % len(SAMPLE)], peer.conn, None) for i in range(count)]
    started = time.process_time()
    wire.encode(batch)
    return (time.process_time() - started) * 1e6 / count


class HeldEmitter(emitter.Emitter):
    """The real emitter, whose flush thread never starts: flushes happen when the bench
    says (bench-flush), or not at all, so that they do not disturb the timing of the
    caller's path (`_encode_us` measures the encoding on its own)."""

    def _start(self) -> None:
        self._thread = threading.current_thread()  # emit() then takes its usual path


def measure(count: int = 3_000, repeat: int = 40) -> CaptureCost:
    new_connection: Any = Connection  # redis-py leaves its constructor unannotated
    conn = new_connection(port=free_port())  # never connected: packing needs no socket
    plain = conn._command_packer
    emitter._emitter = HeldEmitter(f"redis://127.0.0.1:{free_port()}/0")
    peer = commands.Peer(conn)
    recording = commands.RecordingPacker(plain, peer)
    return CaptureCost(
        _pack_us(plain, count, repeat),
        _pack_us(recording, count, repeat),
        statistics.median(_encode_us(peer, count) for _ in range(repeat // 4)),
    )
