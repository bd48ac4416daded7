"""demo.inspectors' pure logic: the order a worker takes waiting messages in, kombu's binding
members. On a real Redis and worker: tests/e2e/test_inspectors.py."""

from __future__ import annotations

from demo import inspectors as ins


def test_take_order_stops_after_a_list_longer_than_the_peek() -> None:
    def msg(n: int) -> ins.Message:
        return ins.Message({"id": f"t{n}"})

    cut_list = ins.SubQueue("q", 0, 3, (msg(1), msg(2)))
    later = ins.SubQueue("q\x06\x166", 6, 1, (msg(9),))
    assert [m.task_id for m in ins.QueueView("q", (cut_list, later)).take_order()] == ["t1", "t2"]
    whole = ins.SubQueue("q", 0, 2, (msg(1), msg(2)))
    assert [m.task_id for m in ins.QueueView("q", (whole, later)).take_order()] == [
        "t1",
        "t2",
        "t9",
    ]


def test_split_binding_reads_kombus_routing_key_pattern_queue_member() -> None:
    assert ins.split_binding("celery", "celery\x06\x16\x06\x16celery") == ins.Binding(
        "celery", "celery", "", "celery"
    )
    assert ins.split_binding("ex", "rk") == ins.Binding("ex", "rk", "", "")
