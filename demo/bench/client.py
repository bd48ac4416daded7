"""The benchmark's client: publish N `add(i, i)` tasks, wait for every result, print JSON.

`python -m demo.bench.client --tasks N` runs one batch. `--serve` (what `demo bench` uses)
runs a batch for each number read on stdin and prints one JSON line for each, until EOF:
one warm process per mode for the whole run. Its environment (CELERY_BROKER_URL,
XRAY_TRACE) picks the mode, so the client side of tracing is measured too. The timed span
runs from the first timed publish to the last result; a warm-up batch before it pays the
one-off costs (connections, pub/sub set-up, the emitter's thread) that are not a per-task
cost. Exit code 0 only if every result came back right.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

# The parent set CELERY_BROKER_URL and XRAY_TRACE before starting this process: the app
# reads them here, on import.
from envoi_mails import add
from envoi_mails.xray import emitter


def run_batch(count: int, deadline_s: float) -> dict[str, Any]:
    """Publish `count` tasks, then wait for them in order until `deadline_s` after the first.

    Returns `received` (results that came back before the deadline), `wrong` (failed tasks or
    wrong sums), `elapsed_s`, from the first publish to the last result received,
    `tasks_per_s` over that span, and `cpu_s`, the CPU this process (all its threads) used
    meanwhile.
    """
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + deadline_s
    # Publish everything first, as a producer would: the worker drains the queue meanwhile.
    results = [add.apply_async(args=(i, i)) for i in range(count)]
    received = wrong = 0
    last = start
    for i, result in enumerate(results):
        try:
            value = result.get(timeout=max(deadline - time.perf_counter(), 0.001), propagate=False)
        except CeleryTimeout:
            break  # the rest are missing: `received` says how many came back
        last = time.perf_counter()
        received += 1
        if value != 2 * i:
            wrong += 1
    cpu_s = time.process_time() - cpu_start
    elapsed = last - start
    return {
        "received": received,
        "wrong": wrong,
        "elapsed_s": elapsed,
        "tasks_per_s": received / elapsed if elapsed else 0.0,
        "cpu_s": cpu_s,
    }


def serve(deadline_s: float) -> int:
    """A batch for each task count read on stdin, one JSON line each; 0 at EOF if all held."""
    print(json.dumps({"ready": True, "traced": emitter.get() is not None, "pid": os.getpid()}))
    sys.stdout.flush()
    ok = True
    for line in sys.stdin:
        count = int(line)
        batch = run_batch(count, deadline_s)
        ok = ok and batch["received"] == count and not batch["wrong"]
        print(json.dumps({"tasks": count, **batch}))
        sys.stdout.flush()
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1500, help="timed add(i, i) tasks")
    parser.add_argument("--warmup", type=int, default=0, help="untimed tasks sent first")
    parser.add_argument(
        "--deadline", type=float, default=None, help="seconds allowed per batch (default: scaled)"
    )
    parser.add_argument(
        "--serve", action="store_true", help="then a batch for each task count read on stdin"
    )
    args = parser.parse_args(argv)
    # Generous: a loaded 2-core machine runs a few hundred tasks/s; 20 tasks/s would be broken.
    deadline_s = args.deadline or 30.0 + args.tasks / 20
    if args.warmup:
        warm = run_batch(args.warmup, deadline_s)
        if warm["received"] != args.warmup or warm["wrong"]:
            print(json.dumps({"error": "warm-up incomplete", "warmup": warm}))
            return 1
    if args.serve:
        return serve(deadline_s)
    timed = run_batch(args.tasks, deadline_s)

    report = {
        "tasks": args.tasks,
        "warmup": args.warmup,
        **timed,
        # What this process really ran with, so the bench can check the mode it asked for.
        "traced": emitter.get() is not None,
        "pid": os.getpid(),
    }
    print(json.dumps(report))
    return 0 if timed["received"] == args.tasks and not timed["wrong"] else 1


if __name__ == "__main__":
    sys.exit(main())
