"""Who sent a command, and for which task: the pure rules, without processes."""

from __future__ import annotations

import os

from demo.spy import monitor as spy
from demo.spy.attribution import (
    Attributor,
    DeliveryTags,
    LuaSenders,
    Sender,
    celery_subcommand,
    parse_client_list,
    role_from_cmdlines,
    split_addr,
)
from demo.spy.monitor_line import MonitorLine
from demo.trace import timeline
from envoi_mails.xray import emitter, stream
from monitor_capture import TASK_ID, read_capture

WORKER = ["/venv/bin/python", "-m", "celery", "-A", "envoi_mails", "worker", "-c", "2", "-E"]
SHELL = ["/bin/bash", "-c", "pytest"]


def test_worker_main_is_a_celery_worker_whose_parent_is_not_one() -> None:
    assert role_from_cmdlines(WORKER, SHELL) == "worker-main"


def test_pool_child_keeps_the_worker_cmdline_and_has_a_worker_parent() -> None:
    assert role_from_cmdlines(WORKER, WORKER) == "pool-child"


def test_celery_script_and_python_dash_m_celery_are_both_recognised() -> None:
    assert celery_subcommand(["/usr/local/bin/celery", "-A", "envoi_mails", "worker"]) == "worker"
    assert celery_subcommand(WORKER) == "worker"
    assert celery_subcommand(["celery", "--app=envoi_mails", "worker", "-l", "info"]) == "worker"


def test_an_app_named_worker_is_not_taken_for_the_subcommand() -> None:
    assert celery_subcommand(["celery", "-A", "worker", "flower"]) == "flower"


def test_flower_by_celery_subcommand_or_by_its_own_script() -> None:
    assert role_from_cmdlines(["celery", "-A", "envoi_mails", "flower"], SHELL) == "flower"
    assert role_from_cmdlines(["/venv/bin/flower", "--port=5555"], SHELL) == "flower"


def test_celery_beat_by_its_subcommand() -> None:
    beat = ["/venv/bin/python", "-m", "celery", "-A", "envoi_mails", "beat", "-s", "beat-schedule"]
    assert role_from_cmdlines(beat, SHELL) == "beat"


def test_any_other_process_is_a_client() -> None:
    assert role_from_cmdlines(["python", "-m", "pytest", "-q"], SHELL) == "client"
    assert role_from_cmdlines(["python", "scenarios/01_worker_boot.py"], WORKER) == "client"
    assert role_from_cmdlines([], []) == "client"
    assert role_from_cmdlines(["python", "-m", "pytest", "-k", "flower or worker"], []) == "client"
    assert role_from_cmdlines(["python", "-m", "pytest", "tests/celery", "worker"], []) == "client"


def test_client_list_gives_each_address_its_name_or_empty() -> None:
    text = (
        "id=3 addr=127.0.0.1:49858 laddr=127.0.0.1:6379 fd=8 name= age=4 idle=0 flags=N db=0\n"
        "id=7 addr=127.0.0.1:49954 laddr=127.0.0.1:6379 fd=12 name=xray-trace age=2 cmd=xadd\n"
        "id=9 addr=[::1]:5000 laddr=[::1]:6379 fd=13 name=worker-1 age=1 cmd=brpop\n"
    )
    assert parse_client_list(text) == {
        "127.0.0.1:49858": "",
        "127.0.0.1:49954": "xray-trace",
        "[::1]:5000": "worker-1",
    }


def test_addresses_split_into_ip_and_port_and_lua_has_none() -> None:
    assert split_addr("127.0.0.1:54321") == ("127.0.0.1", 54321)
    assert split_addr("[::1]:5000") == ("::1", 5000)
    assert split_addr("lua") is None
    assert split_addr("unix:/tmp/redis.sock") is None


def _unacked_task_ids(lines: list[MonitorLine]) -> dict[tuple[str, str], str | None]:
    """Feed every line to one DeliveryTags; what each unacked command was mapped to."""
    tags = DeliveryTags()
    found = {}
    for line in lines:
        task_id = tags.task_id(line.args)
        if line.args[1:2] in (("unacked",), ("unacked_index",)):
            found[(line.command, line.args[1])] = task_id
    return found


def test_lua_commands_belong_to_the_sender_of_the_preceding_evalsha() -> None:
    lua = LuaSenders()
    by_addr = {"127.0.0.1:49862": Sender("worker-main", 5666, 1, None)}
    scripted = []
    for line in read_capture():
        sender = lua.sender_for(line.db) if line.from_lua else by_addr.get(line.addr)
        if sender is None:
            continue
        lua.observe(line, sender)
        if line.from_lua:
            scripted.append((line.args[0], sender))
    assert scripted, "the fixture holds Lua commands after EVALSHA from 127.0.0.1:49862"
    assert {sender.pid for _, sender in scripted} == {5666}


def test_a_lua_command_with_no_eval_seen_stays_attributed_to_lua() -> None:
    assert LuaSenders().sender_for(0).role == "lua"


def test_unacked_commands_carry_the_task_id_of_their_delivery_tag() -> None:
    found = _unacked_task_ids(read_capture())
    assert found[("ZADD", "unacked_index")] == TASK_ID, "named by the LPUSH envelope"
    assert found[("HSET", "unacked")] == TASK_ID
    assert found[("ZREM", "unacked_index")] == TASK_ID
    assert found[("HDEL", "unacked")] == TASK_ID


def test_without_the_lpush_the_hset_still_names_the_tag_for_the_ack() -> None:
    found = _unacked_task_ids([line for line in read_capture() if line.command != "LPUSH"])
    assert found[("ZADD", "unacked_index")] is None, "ZADD comes before HSET in kombu's MULTI"
    assert found[("HDEL", "unacked")] == TASK_ID


def test_delivery_tag_map_is_bounded() -> None:
    tags = DeliveryTags(keep=2)
    for n in range(3):
        tags.task_id(["HSET", "unacked", f"tag{n}", f'[{{"headers": {{"id": "t{n}"}}}}, "", ""]'])
    assert tags.task_id(["HDEL", "unacked", "tag0"]) is None
    assert tags.task_id(["HDEL", "unacked", "tag2"]) == "t2"


def test_attributor_names_kit_connections_and_scans_once_per_unknown_address() -> None:
    me = os.getpid()
    sockets = {("127.0.0.1", 1001): me, ("127.0.0.1", 1002): me}
    names = "id=1 addr=127.0.0.1:1002 name=xray-trace\nid=2 addr=127.0.0.1:1001 name=\n"
    who = Attributor(scan=lambda: sockets, client_list=lambda: names, known_roles={me: "client"})
    assert who.who("127.0.0.1:1001") == Sender("client", me, os.getppid(), None)
    assert who.who("127.0.0.1:1002").role == "kit"
    assert who.who("lua").role == "lua"
    assert who.who("10.0.0.9:4000") == Sender("unknown", None, None, None)
    assert who.who("10.0.0.9:4000").role == "unknown"
    assert who.scans == 2, "one scan found both local sockets; one for the remote, then cached"


def test_spy_and_timeline_read_the_stream_the_emitter_writes() -> None:
    assert spy.TRACE_STREAM == timeline.STREAM == stream.STREAM
    assert timeline.STREAM_MAXLEN == stream.STREAM_MAXLEN
    assert timeline.CLIENT_NAME.startswith("xray") and emitter.CLIENT_NAME.startswith("xray")


def test_a_socket_held_by_a_parent_and_its_forked_child_belongs_to_the_parent() -> None:
    from demo.spy.sockets import prefer_parents

    parents = {4100: 1, 4103: 4100, 4104: 4100}
    held = {4100: {("127.0.0.1", 5000), ("127.0.0.1", 5001)}}
    # psutil named the children for both of the parent's sockets; 5002 is a child's own.
    owners = {("127.0.0.1", 5000): 4103, ("127.0.0.1", 5001): 4104, ("127.0.0.1", 5002): 4104}
    fixed = prefer_parents(owners, parents.get, lambda pid: held.get(pid, set()))
    assert fixed == {
        ("127.0.0.1", 5000): 4100,
        ("127.0.0.1", 5001): 4100,
        ("127.0.0.1", 5002): 4104,
    }


def test_the_kits_own_trace_appends_are_dropped_before_any_parse() -> None:
    """The emitter's EVALSHA carries a whole flush (tens of KB): MONITOR's reader must not parse
    it, nor show the script's XADD, GET and SET on the kit's keys."""
    watcher = spy.Spy("redis://127.0.0.1:1/0")  # no connection: only its line handling runs
    sha = "a" * 40
    batch = '{\\"g\\": []}' * 1000
    lines = [
        f'+1.0 [0 127.0.0.1:5000] "EVALSHA" "{sha}" "2" "xray:trace" "xray:trace:offset" '
        f'"33554432" "100000" "g" "{batch}"',
        f'+1.0 [0 lua] "GET" "{stream.OFFSET_KEY}"',
        f'+1.0 [0 lua] "XADD" "xray:trace" "MAXLEN" "~" "100000" "5-0" "g" "{batch}"',
        f'+1.0 [0 lua] "SET" "{stream.OFFSET_KEY}" "5"',
    ]
    for line in lines:
        watcher._handle(line.encode())
    assert watcher.skipped == 0 and not watcher.events()
