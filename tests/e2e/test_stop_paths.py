"""Issue 15, case 1: whatever signals arrive, and whenever, everything the kit started stops,
and what it prints about it is true. On real processes: the kit's redis-server, SMTP sink,
worker and Flower, interrupted as a user in a terminal interrupts them."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

import pytest
from kit_launch import (
    DEMO_UP,
    ROOT,
    RUN_DEMO,
    Launched,
    kit_env,
    launch,
    redis_folder,
    wait_for_children,
)

pytestmark = pytest.mark.e2e

SCENARIO_02 = [sys.executable, str(ROOT / "scenarios" / "02_send_one_mail.py"), "--no-pause"]
BENCH = [sys.executable, "-m", "demo", "bench", "--tasks", "300", "--rounds", "4"]
START_DEADLINE_S = 90.0  # parts start in seconds; the machine is shared with other runs
# An impatient user presses Ctrl-C again and again: some land while the kit is stopping. The
# worker's warm shutdown takes seconds; Redis and the SMTP sink stop in a fraction of one.
SECOND_CTRL_C_S = 0.3
FAST_CTRL_C_S = 0.05
# What a shell shows as 130 either way: the kit exits 130 once it has stopped everything, or
# dies by one more Ctrl-C that lands after that (it has nothing left to stop then).
INTERRUPTED = {128 + signal.SIGINT, -signal.SIGINT}


def _interrupt_when(kit: Launched, ready: str, gap_s: float, tmp_path: Path) -> int:
    """Ctrl-C again and again once a process `ready` names runs (a worker: with its pool);
    check nothing is left, not even the kit's Redis folder outside the state folder."""
    try:
        folder = redis_folder(kit.wait_for_process("redis-server", START_DEADLINE_S))
        process = kit.wait_for_process(ready, START_DEADLINE_S)
        if "worker" in ready:
            wait_for_children(process, START_DEADLINE_S)
        code = kit.ctrl_c_until_it_exits(gap_s=gap_s)
        left = kit.left_behind()
    finally:
        kit.kill()
    assert left == [], str(kit)
    assert not folder.exists() or tmp_path in folder.parents, f"{folder} left behind"
    assert code in INTERRUPTED, str(kit)
    return code


def test_a_scenario_interrupted_again_and_again_stops_everything_it_started(tmp_path: Path) -> None:
    kit = launch(SCENARIO_02, kit_env(tmp_path))
    _interrupt_when(kit, "envoi_mails worker", SECOND_CTRL_C_S, tmp_path)
    assert "interrupted: everything the scenario started is stopped." in kit.output


@pytest.mark.parametrize("launcher", [RUN_DEMO, DEMO_UP], ids=["./run demo", "demo up"])
def test_demo_interrupted_again_and_again_during_start_up_leaves_nothing(
    launcher: list[str], tmp_path: Path
) -> None:
    kit = launch(launcher, kit_env(tmp_path))
    _interrupt_when(kit, "demo.stack.smtp_sink", FAST_CTRL_C_S, tmp_path)
    assert "Aborted!" not in kit.output
    assert "interrupted during start-up: nothing left running" in kit.output, str(kit)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=str)
def test_demo_up_stopped_by_any_signal_leaves_nothing(signum: int, tmp_path: Path) -> None:
    """`kill`, a closed terminal, even `kill -9` (which no process can catch: Linux then
    SIGTERMs each part for it, PR_SET_PDEATHSIG)."""
    kit = launch([*DEMO_UP, "--no-flower"], kit_env(tmp_path))
    try:
        kit.wait_for("demo send", START_DEADLINE_S)
        assert len(kit.family()) >= 4, "redis, SMTP sink, worker MainProcess + child"
        kit.proc.send_signal(signum)
        code = kit.finish()
        left = kit.left_behind(grace_s=20)  # the worker's warm shutdown, after a SIGKILL
    finally:
        kit.kill()
    assert left == [], str(kit)
    if signum != signal.SIGKILL:
        assert code == 0 and "stopped: nothing left running." in kit.output, str(kit)


def test_bench_interrupted_again_and_again_stops_every_lane(tmp_path: Path) -> None:
    """`demo bench` runs a redis-server, a worker and a client per lane: Ctrl-C during a
    round, and more while it stops, stop them all, and each lane's Redis folder (in the
    system's temporary folder) goes with its server."""
    kit = launch([*BENCH, "--variant", "aa=XRAY_TRACE=0"], kit_env(tmp_path))
    try:
        kit.wait_for("CPU/task", START_DEADLINE_S)  # a round is under way: every lane runs
        servers = [p for p in kit.family() if "redis-server" in " ".join(p.cmdline())]
        folders = [redis_folder(server) for server in servers]
        code = kit.ctrl_c_until_it_exits(gap_s=SECOND_CTRL_C_S)
        left = kit.left_behind()
    finally:
        kit.kill()
    assert len(servers) == 4, "plain, traced, traced+monitor and the variant: a Redis each"
    assert left == [], str(kit)
    assert not [folder for folder in folders if folder.exists()], str(kit)
    assert code in INTERRUPTED, str(kit)
    assert "interrupted: every lane is stopped, nothing left running." in kit.output, str(kit)
    assert "Aborted!" not in kit.output


def test_soak_interrupted_again_and_again_stops_its_stack(tmp_path: Path) -> None:
    """`demo soak` mid-run: its stack (Redis, SMTP sink, worker) stops, and it says so."""
    kit = launch([sys.executable, "-m", "demo", "soak", "--mails", "2000"], kit_env(tmp_path))
    try:
        kit.wait_for("sent", START_DEADLINE_S)  # its first progress line: mails are flowing
    except AssertionError:
        kit.kill()
        raise
    _interrupt_when(kit, "envoi_mails worker", SECOND_CTRL_C_S, tmp_path)
    assert "interrupted: the soak's stack is stopped, nothing left running" in kit.output, str(kit)
    assert "Aborted!" not in kit.output


def _redis_folders() -> set[Path]:
    """The private redis-servers' own folders (RedisServer without a folder: the bench's)."""
    return set(Path(tempfile.gettempdir()).glob("xray-redis-*"))


def test_bench_interrupted_again_and_again_during_start_up_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C while the bench starts its lanes: a lane half started (its redis-server up, its
    worker not yet) is stopped too, folder included (it was left to the kernel's signal)."""
    before = _redis_folders()
    kit = launch(BENCH, kit_env(tmp_path))
    try:
        kit.wait_for("bench: ", START_DEADLINE_S)  # its first line: the lanes start now
        code = kit.ctrl_c_until_it_exits(gap_s=FAST_CTRL_C_S)
        left = kit.left_behind()
    finally:
        kit.kill()
    assert left == [], str(kit)
    assert _redis_folders() - before == set(), str(kit)
    assert code in INTERRUPTED, str(kit)
