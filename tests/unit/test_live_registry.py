"""demo.live.registry: a running scenario announces itself, for the live page to follow."""

from __future__ import annotations

import json
import os
from pathlib import Path

from demo.live import registry

URL = "redis://127.0.0.1:6399/0"


def test_a_scenario_is_listed_while_it_runs_and_not_after(tmp_path: Path) -> None:
    with registry.announce(tmp_path, "02 send one mail", URL):
        found = registry.find(tmp_path, os.getpid())
        assert found is not None and (found.title, found.broker_url) == ("02 send one mail", URL)
    assert registry.running(tmp_path) == []


def test_a_file_left_by_a_dead_process_is_ignored(tmp_path: Path) -> None:
    folder = tmp_path / registry.FOLDER
    folder.mkdir()
    dead = 2**22 + 12345  # above Linux's default pid_max: no process has it
    (folder / f"{dead}.json").write_text(json.dumps({"title": "x", "broker_url": URL}))
    (folder / "not-a-pid.json").write_text("{}")
    assert registry.running(tmp_path) == []


def test_a_read_only_state_folder_does_not_stop_the_scenario(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with registry.announce(blocked, "t", URL):
        pass
