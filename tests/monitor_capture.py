"""The recorded MONITOR capture of one add(2, 3) on a real worker (tests/fixtures/), as the
unit tests of the spy and the protocol read it."""

from __future__ import annotations

from pathlib import Path

from demo.spy.monitor_line import MonitorLine, parse_monitor_line

CAPTURE = Path(__file__).resolve().parent / "fixtures" / "monitor_one_task.txt"
TASK_ID = "d4181aaa-a2a2-41e8-9cb5-e0a6d54e4e89"  # the add(2, 3)
TAG = "fde24a15-33d9-4ef4-b8db-487c24d9e6b7"  # its delivery tag


def read_capture() -> list[MonitorLine]:
    """Every command line of the capture, parsed, in order (the OK banner is not one)."""
    parsed = (parse_monitor_line(raw) for raw in CAPTURE.read_text(encoding="utf-8").splitlines())
    return [line for line in parsed if line is not None]


def first(lines: list[MonitorLine], command: str, key: str | None = None) -> MonitorLine:
    """The first captured line with this command (and first argument, if given)."""
    for m in lines:
        if m.command == command and (key is None or m.args[1] == key):
            return m
    raise AssertionError(f"no {command} {key} in capture")
