"""The independent check of command capture: scenario 02 run with MONITOR beside it.

Each process of the app records its own Redis commands; MONITOR sees everything Redis ran,
and the spy attributes each line to a process from the connection's name (CLIENT SETNAME /
CLIENT LIST) or, failing that, the OS's socket table. Over the window MONITOR watched, for
each process, the commands MONITOR saw (name and first key, with counts) must equal the
commands that process recorded: nothing recorded that Redis did not run, nothing run that
the sender did not record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from demo import names
from demo.docsgen.headless import run_headless
from demo.protocol.commands import CHATTER, command_name
from demo.scenes.frame import monitor_path
from demo.trace.event import TraceEvent, args_of, key_of
from demo.trace.timeline import is_marker, read_jsonl
from scenario_runner import TIMEOUT_S, scenario_path

Census = dict[int, Counter[tuple[str, str]]]
SCENARIO = scenario_path("02")
# Both ends of the window MONITOR watched: a command sent within this much of an end may be
# on one side of it when recorded (at packing) and on the other when Redis ran it.
EDGE_S = 0.3


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenario 02's trace, written with `--monitor --json-trace PATH`."""
    folder = tmp_path_factory.mktemp("crosscheck")
    done = run_headless(SCENARIO, folder, TIMEOUT_S, options=["--monitor"])
    assert done.returncode == 0, done.failure_report()
    return folder / f"{SCENARIO.stem}.jsonl"


def _census(events: list[TraceEvent], start: float, end: float) -> Census:
    """pid -> (command, first key) -> count, over the window, connection chatter left out
    (CHATTER: HELLO, PING, CLIENT SETNAME …, which both sides leave out, though processes
    record it in the stream) as well as the kit's barrier reads."""
    by_pid: Census = defaultdict(Counter)
    for e in events:
        if e["event"] != names.REDIS_COMMAND or e["pid"] is None or is_marker(e):
            continue
        name = command_name(args_of(e))
        if start <= e["ts"] <= end and name not in CHATTER:
            by_pid[e["pid"]][(name, key_of(e))] += 1
    return by_pid


def test_each_process_recorded_exactly_what_monitor_saw_it_send(trace: Path) -> None:
    # What a process recorded carries the server it sent to; MONITOR's lines never do.
    recorded = [e for e in read_jsonl(trace) if "server" in e]
    seen = read_jsonl(monitor_path(trace))
    app = [e for e in seen if e.get("via") != names.LUA and e["role"] != names.KIT]
    assert recorded and app
    start, end = app[0]["ts"] + EDGE_S, app[-1]["ts"] - EDGE_S
    mine, theirs = _census(recorded, start, end), _census(app, start, end)
    roles = {e["role"] for e in recorded}
    assert {names.CLIENT, names.WORKER_MAIN, names.POOL_CHILD} <= roles
    for pid, commands in mine.items():
        assert theirs.get(pid, Counter()) == commands, f"pid {pid}: MONITOR vs recorded"
    unrecorded = {pid: dict(c) for pid, c in theirs.items() if pid not in mine}
    assert not unrecorded, f"processes MONITOR saw that recorded nothing: {unrecorded}"
