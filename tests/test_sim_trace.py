"""The simulated Redis's typed trace (properties/sim/_trace.py): one record per step,
with the facts a report needs as fields, and a JSON form that reads back the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from streamcheck.properties.sim import (
    CommandExecuted,
    ConnectionClosed,
    ConnectionOpened,
    FailedOver,
    LogRead,
    MessageDelivered,
    MessageDropped,
    Publication,
    SimRedis,
    SubscribeAcknowledged,
    SubscribeExecuted,
    TraceRecord,
    TraceRecordError,
    record_from_json,
    sim_time,
)
from tests.test_sim_redis import only, sim_clock, start


@pytest.fixture(autouse=True)
def _time_shim() -> Iterator[None]:
    with sim_time(sim_clock):
        yield


def kinds(records: list[TraceRecord]) -> list[str]:
    return [type(r).__name__ for r in records]


async def test_a_publish_before_the_subscribe_ran_names_no_receiver_and_the_ack_comes_later() -> (
    None
):
    sim = SimRedis(clock=sim_clock)
    positions = iter(range(100))
    sim.set_position_source(lambda: next(positions))
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        await start(nursery, lambda: a.publish("ch", "early"))
        sim.step(only(sim, "command", "a/c0"))
        sim.step(only(sim, "command", "b/s0"))
        await start(nursery, lambda: a.publish("ch", "late"))
        sim.step(only(sim, "command", "a/c0"))
        await sim.settle()
        nursery.cancel_scope.cancel()
    records = sim.records
    assert kinds(records) == [
        "ConnectionOpened",
        "ConnectionOpened",
        "CommandExecuted",  # PUBLISH early
        "SubscribeExecuted",
        "CommandExecuted",  # PUBLISH late
        "SubscribeAcknowledged",
        "MessageDelivered",
        "ConnectionClosed",
    ]
    early, late = (r for r in records if isinstance(r, CommandExecuted))
    assert early.published == (Publication("ch", "early", ()),)
    assert late.published == (Publication("ch", "late", ("b/s0",)),)
    assert early.command == "PUBLISH" and early.reply == "0" and early.error is None
    subscribed = next(r for r in records if isinstance(r, SubscribeExecuted))
    assert (subscribed.connection, subscribed.client, subscribed.channel) == ("b/s0", "b", "ch")
    acked = next(r for r in records if isinstance(r, SubscribeAcknowledged))
    assert records.index(early) < records.index(subscribed) < records.index(acked)
    delivered = next(r for r in records if isinstance(r, MessageDelivered))
    assert (delivered.message, delivered.discarded) == ("late", False)
    opened = next(r for r in records if isinstance(r, ConnectionOpened))
    assert opened.pubsub and opened.item is None
    closed = records[-1]
    assert isinstance(closed, ConnectionClosed) and not closed.fault
    # Every record took the position source's next value, in order.
    assert [r.position for r in records] == list(range(len(records)))
    assert sim.trace[3].endswith("exec b/s0 SUBSCRIBE ch")


async def test_log_reads_scripts_drops_and_faults_carry_their_facts() -> None:
    sim = SimRedis(clock=sim_clock, auto=True, with_replica=True)
    a, b = sim.client("a"), sim.client("b")
    for seq in range(1, 4):
        await a._command(
            lambda reply: reply, "XADD", b"XADD", b"log", f"{seq}-0".encode(), b"f", b"v"
        )
    assert await a.xrange("log", "2-0", "+", count=10) == [("2-0", {"f": "v"}), ("3-0", {"f": "v"})]
    [read] = [r for r in sim.records if isinstance(r, LogRead)]
    assert (read.key, read.start, read.end, read.count, read.ids) == (
        "log",
        "2-0",
        "+",
        10,
        ("2-0", "3-0"),
    )
    sim.set_auto(False)
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        await sim.settle()
        await start(nursery, lambda: a.publish("ch", "x" * 300))
        sim.step(only(sim, "command"))
        sim.drop(only(sim, "delivery"))
        await start(nursery, lambda: a.sadd("set", "member"))
        sim.step(only(sim, "command"))  # a write the replica never receives
        sim.failover()
        nursery.cancel_scope.cancel()
    [dropped] = [r for r in sim.records if isinstance(r, MessageDropped)]
    assert dropped.message == "x" * 300  # whole, never cut
    assert dropped.line().endswith("\u2026")  # the line is
    [failed_over] = [r for r in sim.records if isinstance(r, FailedOver)]
    assert failed_over.writes_lost == 1
    after = sim.records[sim.records.index(failed_over) + 1 :]
    assert {r.connection for r in after if isinstance(r, ConnectionClosed)} == {"a/c0", "b/s0"}
    assert all(r.fault for r in after if isinstance(r, ConnectionClosed))


async def test_every_record_survives_its_json_form() -> None:
    sim = SimRedis(clock=sim_clock, auto=True, with_replica=True)
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub:
        await sub.subscribe("ch")
        await a.publish("ch", "m")
        await a.xrange("log", "-", "+")
        await a.sadd("set", "member")
        sim.replicate(10)
        sim.relay_pubsub()
        await sub.unsubscribe("ch")
    sim.failover()
    records = sim.records
    assert {type(r).__name__ for r in records} >= {
        "CommandExecuted",
        "LogRead",
        "SubscribeExecuted",
        "SubscribeAcknowledged",
        "UnsubscribeExecuted",
        "MessageDelivered",
        "WriteReplicated",
        "PubSubRelayed",
        "FailedOver",
        "ConnectionOpened",
        "ConnectionClosed",
    }
    for record in records:
        assert record_from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"type": "Nonsense", "time": 0.0},
        {"type": "FailedOver", "time": 0.0},  # writes_lost missing
        {"type": "FailedOver", "time": "soon", "writes_lost": 1},
        {"type": "FailedOver", "time": 0.0, "writes_lost": True},
        {"type": "LogRead", "time": 0.0, "connection": "c", "client": "a", "key": "k",
         "start": "-", "end": "+", "ids": [1]},
        {"type": "CommandExecuted", "time": 0.0, "connection": "c", "client": "a",
         "command": "GET", "description": "GET k", "published": [{"channel": "c"}]},
    ],
)  # fmt: skip
def test_a_malformed_record_is_a_typed_error(data: Any) -> None:
    with pytest.raises(TraceRecordError):
        record_from_json(data)
