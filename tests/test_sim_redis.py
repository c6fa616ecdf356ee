"""The simulated Redis (properties/sim): its fakeredis hooks, its step semantics, and
impl's replicas running over it in auto and in manual mode."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from streamcheck.impl import GenerationJobManager, open_replica
from streamcheck.impl._seams import CountingIds
from streamcheck.impl.redis import Keys, PubSubMessage, RedisConnectionError
from streamcheck.impl.transport._lua import PUBLISH
from streamcheck.model import Done, Gap
from streamcheck.properties.sim import RedisCommandError, SimRedis, SimSubscriber, sim_time
from streamcheck.properties.sim._engine import Engine
from tests.backends import FAST, collect, delta, texts

EPOCH = 1_700_000_000.0


def sim_clock() -> float:
    return EPOCH + trio.current_time()


class SimWallClock:
    """impl's wall clock on trio's (mock) clock."""

    def now_ms(self) -> int:
        return int(sim_clock() * 1000)


@pytest.fixture(autouse=True)
def _time_shim(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.function.__name__ == "test_time_shim_is_reversible":
        yield
        return
    with sim_time(sim_clock):
        yield


def new_sim(*, auto: bool = False, with_replica: bool = False) -> SimRedis:
    return SimRedis(clock=sim_clock, auto=auto, with_replica=with_replica)


async def start(nursery: trio.Nursery, fn: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``fn`` in the background; the returned list receives its result (or error)."""
    box: list[Any] = []

    async def runner() -> None:
        try:
            box.append(await fn())
        except Exception as exc:
            box.append(exc)

    nursery.start_soon(runner)
    await trio.testing.wait_all_tasks_blocked()
    return box


def only(sim: SimRedis, kind: str, connection: str | None = None) -> int:
    items = [
        i
        for i in sim.runnable()
        if i.kind == kind and (connection is None or i.connection == connection)
    ]
    assert len(items) == 1, items
    return items[0].id


# -- (a) contract of the private fakeredis hooks ---------------------------------------


async def test_fakeredis_hooks_contract() -> None:
    # Import paths and the direct command path.
    from fakeredis import FakeServer
    from fakeredis._socket import FakeSocket

    assert hasattr(FakeSocket, "_process_command") and hasattr(FakeSocket, "publish")
    assert callable(FakeServer)
    published: list[tuple[bytes, bytes]] = []

    def hook(channel: bytes, message: bytes) -> int:
        published.append((channel, message))
        return 7

    engine = Engine(hook)
    now = EPOCH + 100.0
    # PUBLISH inside Lua reaches the hook, and its return value is the script's.
    reply = engine.execute(
        [b"EVAL", b"return redis.call('PUBLISH', KEYS[1], ARGV[1])", b"1", b"ch", b"hi"], now
    )
    assert reply == 7 and published == [(b"ch", b"hi")]
    # The time shim drives EXPIRE and XADD auto ids.
    assert engine.execute([b"SET", b"k", b"v"], now) == b"OK"
    assert engine.execute([b"EXPIRE", b"k", b"10"], now) == 1
    assert engine.execute([b"GET", b"k"], now + 9.9) == b"v"
    assert engine.execute([b"GET", b"k"], now + 10.1) is None
    assert engine.execute([b"XADD", b"x", b"*", b"f", b"v"], now) == f"{int(now * 1000)}-0".encode()
    # The shim is installed in the module that computes stream ids.
    import fakeredis._helpers

    assert type(vars(fakeredis._helpers)["time"]).__name__ == "TimeShim"
    # Errors come back as redis-py exceptions, NOSCRIPT distinguishable.
    from redis.exceptions import NoScriptError

    assert isinstance(engine.execute([b"EVALSHA", b"0" * 40, b"0"], now), NoScriptError)
    # A replica copy has the same data and no hook.
    replica = engine.copy(None)
    assert replica.execute([b"XLEN", b"x"], now) == 1
    assert replica.execute([b"PUBLISH", b"ch", b"x"], now) == 0


def test_time_shim_is_reversible() -> None:
    import time

    import fakeredis._helpers
    import fakeredis._socket._base

    def module_time() -> object:
        return vars(fakeredis._socket._base)["time"]

    assert module_time() is time
    with pytest.raises(RuntimeError, match="sim_time"):
        Engine(None).execute([b"PING"], EPOCH)
    with sim_time(lambda: 5.0) as shim:
        assert shim.time() == 5.0
        assert module_time() is shim
        with sim_time(lambda: 6.0):
            assert vars(fakeredis._helpers)["time"].time() == 6.0
        assert shim.time() == 5.0
        assert shim.monotonic() > 0  # everything else is the real module's
    assert module_time() is time
    assert vars(fakeredis._helpers)["time"] is time


# -- (b) the subscribe acknowledgement window --------------------------------------------


async def test_message_before_the_ack_executed_is_lost_after_the_ack_it_arrives() -> None:
    sim = new_sim()
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        subscribed = await start(nursery, lambda: sub.subscribe("ch"))
        published = await start(nursery, lambda: a.publish("ch", "early"))
        # The PUBLISH runs before the SUBSCRIBE: nobody hears it.
        sim.step(only(sim, "command", "a/c0"))
        await trio.testing.wait_all_tasks_blocked()
        assert published == [0]
        sim.step(only(sim, "command", "b/s0"))  # SUBSCRIBE executes: the ack is queued
        await trio.testing.wait_all_tasks_blocked()
        assert subscribed == []
        ack = sim.runnable()
        assert [(i.kind, i.description) for i in ack] == [("delivery", "ack subscribe ch")]
        # Registered server-side already: a publish now is heard, behind the ack.
        published2 = await start(nursery, lambda: a.publish("ch", "late"))
        sim.step(only(sim, "command"))
        await trio.testing.wait_all_tasks_blocked()
        assert published2 == [1]
        sim.step(ack[0].id)
        await trio.testing.wait_all_tasks_blocked()
        assert subscribed == [None]
        received = await start(nursery, sub.receive)
        assert received == []
        sim.step(only(sim, "delivery"))
        await trio.testing.wait_all_tasks_blocked()
        assert received == [PubSubMessage("ch", "late")]
        assert sim.statistics().messages_unheard == 1
        nursery.cancel_scope.cancel()


# -- (c) per-connection FIFO ---------------------------------------------------------------


async def test_one_connection_is_fifo_two_connections_are_not_ordered() -> None:
    sim = new_sim(auto=False)
    one = sim.client("one", pool_size=1)
    a, b = sim.client("a"), sim.client("b")
    receiver = sim.client("r")
    async with receiver.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        assert sim.run_until_quiet() == 2
        await trio.testing.wait_all_tasks_blocked()
        # Two concurrent publishes on one connection: only the first is runnable.
        await start(nursery, lambda: one.publish("ch", "1"))
        await start(nursery, lambda: one.publish("ch", "2"))
        runnable = sim.runnable()
        assert [i.description for i in runnable] == ["PUBLISH ch 1"]
        with pytest.raises(ValueError):
            sim.step(max(i.id for i in sim.pending()))
        sim.run_until_quiet()
        got = [await sub.receive(), await sub.receive()]
        assert [m.data for m in got if isinstance(m, PubSubMessage)] == ["1", "2"]
        # Two clients: both runnable; the harness executes the second first.
        await start(nursery, lambda: a.publish("ch", "from-a"))
        await start(nursery, lambda: b.publish("ch", "from-b"))
        by_connection = {i.connection: i.id for i in sim.runnable()}
        assert set(by_connection) == {"a/c0", "b/c0"}
        sim.step(by_connection["b/c0"])
        sim.step(by_connection["a/c0"])
        sim.run_until_quiet()
        got = [await sub.receive(), await sub.receive()]
        assert [m.data for m in got if isinstance(m, PubSubMessage)] == ["from-b", "from-a"]
        # A pooled client runs concurrent commands on separate connections.
        await start(nursery, lambda: a.publish("ch", "x"))
        await start(nursery, lambda: a.publish("ch", "y"))
        assert {i.connection for i in sim.runnable()} == {"a/c0", "a/c1"}
        sim.run_until_quiet()
        nursery.cancel_scope.cancel()


# -- (d) drops and disconnects ----------------------------------------------------------


async def test_dropped_message_is_lost_and_disconnect_fails_pending_commands() -> None:
    sim = new_sim()
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        await sim.settle()
        for text in ("m1", "m2", "m3"):
            await start(nursery, functools.partial(a.publish, "ch", text))
            sim.step(only(sim, "command"))
        queued = [i for i in sim.pending() if i.kind == "delivery"]
        assert len(queued) == 3
        sim.drop(queued[1].id)
        await sim.settle()
        got = [await sub.receive(), await sub.receive()]
        assert [m.data for m in got if isinstance(m, PubSubMessage)] == ["m1", "m3"]
        assert sim.statistics().messages_dropped == 1
        # A pending command fails with RedisConnectionError and never executes.
        pending_get = await start(nursery, lambda: a.run_script(PUBLISH, keys=[], args=[]))
        assert len(sim.runnable()) == 1
        sim.disconnect("a/c0")
        await trio.testing.wait_all_tasks_blocked()
        assert len(pending_get) == 1 and isinstance(pending_get[0], RedisConnectionError)
        assert "a/c0" not in sim.connections()
        # The next command opens a new connection.
        result = await start(nursery, lambda: a.get("nothing"))
        assert [i.connection for i in sim.runnable()] == ["a/c1"]
        await sim.settle()
        assert result == [None]
        # A subscriber connection drop: queued messages lost, receive() raises,
        # subscriptions removed server-side.
        await start(nursery, lambda: a.publish("ch", "doomed"))
        sim.step(only(sim, "command"))
        sim.disconnect("b/s0")
        with pytest.raises(RedisConnectionError):
            await sub.receive()
        with pytest.raises(RedisConnectionError):
            await sub.subscribe("other")
        assert await _auto_publish(sim, a, "ch", "after") == 0
        stats = sim.statistics()
        assert (stats.messages_lost, stats.disconnects, stats.commands_failed) == (1, 2, 1)
        with pytest.raises(ValueError):
            sim.drop(12345)
        nursery.cancel_scope.cancel()


async def _auto_publish(sim: SimRedis, client: Any, channel: str, data: str) -> int:
    async with trio.open_nursery() as nursery:
        box = await start(nursery, lambda: client.publish(channel, data))
        await sim.settle()
    result: int = box[0]
    return result


async def test_acks_cannot_be_dropped_and_lost_reply_still_executes() -> None:
    sim = new_sim()
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        sim.run_until_quiet(limit=1)
        with pytest.raises(ValueError):
            sim.drop(only(sim, "delivery"))
        await sim.settle()
        box = await start(nursery, lambda: a.sadd("set", "x"))
        sim.step(only(sim, "command"), lose_reply=True)
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(box[0], RedisConnectionError)
        assert sim.peek("SMEMBERS", "set") == ["x"]
        nursery.cancel_scope.cancel()


# -- (e) the real publish script -------------------------------------------------------------


async def test_publish_script_runs_with_real_semantics() -> None:
    sim = new_sim(auto=True)
    a, b = sim.client("a"), sim.client("b")
    keys = Keys()
    sid = "s1"
    channel = Keys.channel(sid)
    script_keys = [keys.seq(sid), keys.chunks(sid), keys.job(sid), keys.seq_epoch(sid)]

    def args(kind: str, floor: int = 0) -> list[str | int]:
        return ["g1", kind, '{"p":', "}", channel, floor, '{"x":1}', 1200, 86400, "", "1", 100]

    # No job: refused.
    assert await a.run_script(PUBLISH, keys=script_keys, args=args("chunk")) == [-1, 0]
    await a.run_script(
        _HSET, keys=[keys.job(sid)], args=["generationId", "g1", "status", "running"]
    )
    async with b.subscriber() as sub:
        await sub.subscribe(channel)
        assert await a.run_script(PUBLISH, keys=script_keys, args=args("chunk")) == [0, 0]
        assert await a.run_script(PUBLISH, keys=script_keys, args=args("chunk", 5)) == [5, 1]
        assert await a.run_script(PUBLISH, keys=script_keys, args=args("done")) == [6, 0]
        assert await a.run_script(PUBLISH, keys=script_keys, args=args("chunk")) == [-3, 0]
        assert await a.run_script(PUBLISH, keys=script_keys, args=args("done")) == [-4, 0]
        messages = [await sub.receive() for _ in range(3)]
    assert [m.data for m in messages if isinstance(m, PubSubMessage)] == [
        '{"p":0}',
        '{"p":5}',
        '{"p":6}',
    ]
    rows = await a.xrange(keys.chunks(sid), "-", "+")
    # Floor 5 with the counter at 1: seqs 1..4 were lost, and the log says so.
    assert [r[0] for r in rows] == ["0-1", "4-2", "5-1", "6-1"]
    assert rows[0][1] == {"seq": "0", "type": "chunk", "gen": "g1", "event": '{"x":1}'}
    assert rows[1][1] == {"seq": "4", "type": "lost", "first": "1"}
    assert await a.xrange(keys.chunks(sid), "5-1", "+", 1) == [rows[2]]
    assert await a.get(keys.seq(sid)) == "7"
    assert (await a.hgetall(keys.job(sid)))["terminalSeq"] == "6"
    # The first run of each script was EVALSHA, NOSCRIPT, then EVAL.
    publishes = [line for line in sim.trace if " publish stream:{s1}:seq" in line]
    assert "EVALSHA publish" in publishes[0] and "NoScriptError" in publishes[0]
    assert "EVAL publish" in publishes[1] and publishes[1].endswith("-> [-1, 0]")
    assert all("EVALSHA" in line for line in publishes[2:])
    with pytest.raises(RedisCommandError):
        await a.run_script(_BROKEN, keys=[], args=[])


_HSET = type(PUBLISH)("test_hset", "return redis.call('HSET', KEYS[1], unpack(ARGV))")
_BROKEN = type(PUBLISH)("test_broken", "return redis.call('NOSUCHCOMMAND')")


async def test_plain_commands_have_coredis_shapes() -> None:
    sim = new_sim(auto=True)
    a = sim.client("a")
    assert a.is_cluster is False
    assert await a.sadd("s", "x", "y", "x") == 2
    assert await a.smembers("s") == {"x", "y"}
    assert await a.scard("s") == 2
    assert await a.srem("s", "x", "z") == 1
    assert await a.sadd("s") == 0 and await a.srem("s") == 0
    assert await a.exists("s") is True
    assert await a.exists("nope") is False
    assert await a.expire("s", 5) is True
    assert await a.expire("nope", 5) is False
    assert await a.hgetall("nope") == {}
    assert await a.smembers("nope") == set()
    assert await a.xrange("nope", "-", "+") == []
    assert await a.delete("s", "nope") == 1
    assert await a.delete() == 0
    assert await a.get("nope") is None
    assert await a.publish("nobody", "x") == 0
    assert "SADD s x y x" in sim.trace[1]


# -- (f) failover -----------------------------------------------------------------------------


async def test_failover_loses_unreplicated_writes() -> None:
    sim = new_sim(auto=True, with_replica=True)
    a = sim.client("a")
    keys = Keys()
    sid = "s1"
    script_keys = [keys.seq(sid), keys.chunks(sid), keys.job(sid), keys.seq_epoch(sid)]
    args: list[str | int] = [
        *("g1", "chunk", "", "", Keys.channel(sid), 0, "{}", 1200, 86400, "", "1", 100)
    ]
    await a.run_script(
        _HSET, keys=[keys.job(sid)], args=["generationId", "g1", "status", "running"]
    )
    for _ in range(3):
        await a.run_script(PUBLISH, keys=script_keys, args=args)
    assert sim.statistics().replication_lag == 4
    assert sim.replicate(2) == 2  # the HSET and the first publish
    for _ in range(2):
        await a.run_script(PUBLISH, keys=script_keys, args=args)
    assert await a.get(keys.seq(sid)) == "5"
    assert sim.peek("GET", keys.seq(sid), replica=True) == "1"
    assert [i.kind for i in sim.pending()] == ["replication"] * 4
    sim.failover()
    stats = sim.statistics()
    assert (stats.failovers, stats.writes_lost, stats.replication_lag) == (1, 4, 0)
    assert sim.connections() == []
    # The counter, the log and the hash are back where the replica was.
    assert await a.get(keys.seq(sid)) == "1"
    assert [r[0] for r in await a.xrange(keys.chunks(sid), "-", "+")] == ["0-1"]
    assert "terminalSeq" not in await a.hgetall(keys.job(sid))
    # The promoted primary has no scripts: EVALSHA gets NOSCRIPT, then EVAL. It has
    # another run id than the one stored beside the counter, so the script jumps past
    # the floor of 3 the writer had seen, past 100 more seqs and up to the server's
    # clock in ms, and logs the seqs in between as lost.
    floor_args = [*args[:5], 3, *args[6:]]
    reply = await a.run_script(PUBLISH, keys=script_keys, args=floor_args)
    assert isinstance(reply, list)
    seq, regressed = reply
    assert isinstance(seq, int) and regressed == 1
    assert seq >= 1_700_000_000_000  # the simulated clock, in ms
    assert "EVALSHA publish" in sim.trace[-2] and "NoScriptError" in sim.trace[-2]
    rows = await a.xrange(keys.chunks(sid), "-", "+")
    assert [r[0] for r in rows] == ["0-1", f"{seq - 1}-2", f"{seq}-1"]
    # Seqs 1 and 2 were seen by the writer (floor 3): lost. From 3 on: possibly lost.
    assert rows[1][1] == {"seq": str(seq - 1), "type": "lost", "first": "1", "possibly": "3"}
    # Once moved on the new server, the counter is trusted again: no second skip.
    assert await a.run_script(PUBLISH, keys=script_keys, args=floor_args) == [seq + 1, 0]
    # The fresh replica is a full copy of the new primary.
    assert sim.peek("GET", keys.seq(sid), replica=True) == "1"
    sim.replicate(10)
    assert sim.peek("GET", keys.seq(sid), replica=True) == str(seq + 2)
    assert sim.peek("TTL", keys.seq(sid), replica=True) == sim.peek("TTL", keys.seq(sid))


async def test_failover_drops_every_connection() -> None:
    sim = new_sim(with_replica=True)
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        await sim.settle()
        pending = await start(nursery, lambda: a.get("k"))
        sim.failover()
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(pending[0], RedisConnectionError)
        with pytest.raises(RedisConnectionError):
            await sub.receive()
        nursery.cancel_scope.cancel()


async def test_relayed_pubsub_keeps_subscribers_and_lanes_per_primary() -> None:
    # Redis Cluster: the subscriber sits on another node. A failover drops the command
    # connections only; the old primary's relayed message may still arrive, in any
    # order against the new primary's, while each primary's own messages keep theirs.
    sim = new_sim(with_replica=True)
    sim.relay_pubsub()
    a, b = sim.client("a"), sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        await start(nursery, lambda: sub.subscribe("ch"))
        await sim.settle()
        for text in ("old-1", "old-2"):
            await start(nursery, functools.partial(a.publish, "ch", text))
            sim.step(only(sim, "command"))
        pending = await start(nursery, lambda: a.get("k"))
        sim.failover()
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(pending[0], RedisConnectionError)
        for text in ("new-1", "new-2"):
            await start(nursery, functools.partial(a.publish, "ch", text))
            sim.step(only(sim, "command"))
        heads = [i for i in sim.runnable() if i.kind == "delivery"]
        assert [h.description.split()[-1] for h in heads] == ["old-1", "new-1"]
        sim.step(heads[1].id)  # the new primary's first message overtakes the old ones
        await sim.settle()
        received = [await sub.receive() for _ in range(4)]
        assert [m.data for m in received if isinstance(m, PubSubMessage)] == [
            "new-1",
            "old-1",
            "old-2",
            "new-2",
        ]
        nursery.cancel_scope.cancel()


async def test_failover_without_replica_is_refused() -> None:
    with pytest.raises(RuntimeError):
        new_sim().failover()


# -- (g) expiry on the simulated clock --------------------------------------------------------


async def test_keys_expire_on_the_simulated_clock(autojump_clock: trio.testing.MockClock) -> None:
    sim = new_sim(auto=True)
    a = sim.client("a")
    await a.sadd("s", "x")
    assert await a.expire("s", 10)
    await trio.sleep(9.9)
    assert await a.exists("s")
    await trio.sleep(0.2)
    assert not await a.exists("s")
    # Replicated TTLs keep the primary's deadline, whenever the replica applies them.
    sim2 = SimRedis(clock=sim_clock, auto=True, with_replica=True)
    c = sim2.client("c")
    await c.sadd("t", "x")
    await c.expire("t", 10)
    await trio.sleep(5)
    sim2.replicate(2)
    await trio.sleep(5.1)
    assert sim2.peek("EXISTS", "t", replica=True) == 0
    assert sim2.peek("EXISTS", "t") == 0


# -- (h) impl's replicas over the simulation, auto mode -----------------------------------------


@asynccontextmanager
async def sim_replicas(sim: SimRedis, count: int = 2) -> AsyncIterator[list[GenerationJobManager]]:
    async with AsyncExitStack() as stack:
        managers = [
            await stack.enter_async_context(
                open_replica(
                    sim.client(name),
                    settings=FAST,
                    wall_clock=SimWallClock(),
                    ids=CountingIds(f"{name}-"),
                )
            )
            for name in "ab"[:count]
        ]
        yield managers


async def test_replicas_over_the_simulation_in_auto_mode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = new_sim(auto=True)
    async with sim_replicas(sim) as (a, b):
        await a.create_job("s1", "u1")
        await a.emit_chunk("s1", delta("t0"))
        sub = await b.subscribe("s1", "u1")
        for i in range(1, 6):
            assert await a.emit_chunk("s1", delta(f"t{i}"))
        await a.emit_done("s1", {"final": True})
        await a.complete_job("s1")
        events = await collect(sub)
    assert texts(events) == [f"t{i}" for i in range(6)]
    assert isinstance(events[-1], Done)
    assert not [e for e in events if isinstance(e, Gap)]
    assert sim.statistics().messages_delivered >= 5


# -- (i) the same, in manual mode --------------------------------------------------------------


async def test_replicas_over_the_simulation_in_manual_mode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = new_sim(auto=False)
    dropped: list[str] = []

    async def driver() -> None:
        # The harness: at quiescence, step the lowest runnable item, one at a time; the
        # third message for replica b is lost instead.
        seen_for_b = 0
        while True:
            await sim.wait_runnable()
            await trio.testing.wait_all_tasks_blocked()
            while runnable := sim.runnable():
                item = runnable[0]
                if (
                    item.kind == "delivery"
                    and item.connection.startswith("b/")
                    and item.description.startswith("message ")
                ):
                    seen_for_b += 1
                    if seen_for_b == 3:
                        sim.drop(item.id)
                        dropped.append(item.description)
                        continue
                sim.step(item.id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver)
        async with sim_replicas(sim) as (a, b):
            await a.create_job("s1", "u1")
            await a.emit_chunk("s1", delta("t0"))
            sub = await b.subscribe("s1", "u1")
            for i in range(1, 6):
                assert await a.emit_chunk("s1", delta(f"t{i}"))
            await a.emit_done("s1", {"final": True})
            await a.complete_job("s1")
            events = await collect(sub)
        nursery.cancel_scope.cancel()
    assert dropped, "the harness never saw the chunk it meant to drop"
    # The lost message was repaired from the chunk log.
    assert texts(events) == [f"t{i}" for i in range(6)]
    assert isinstance(events[-1], Done)
    assert sim.statistics().messages_dropped == 1
    assert any(" EVALSHA publish " in line for line in sim.trace)


async def test_manual_mode_steps_one_subscribe_by_hand() -> None:
    sim = new_sim()
    b = sim.client("b")
    async with b.subscriber() as sub, trio.open_nursery() as nursery:
        assert isinstance(sub, SimSubscriber)
        done = await start(nursery, lambda: sub.subscribe("ch"))
        first = sim.runnable()
        assert [(i.kind, i.connection, i.description) for i in first] == [
            ("command", "b/s0", "SUBSCRIBE ch")
        ]
        sim.step(first[0].id)
        sim.step(only(sim, "delivery"))
        await trio.testing.wait_all_tasks_blocked()
        assert done == [None]
        # Subscribing again to a wanted channel is immediate.
        await sub.subscribe("ch")
        await start(nursery, lambda: sub.unsubscribe("ch"))
        assert await sim.settle() == 1
        assert sim.runnable() == []
        nursery.cancel_scope.cancel()
    assert repr(sim).startswith("<SimRedis")
    assert any("close b/s0" in line for line in sim.trace)


async def test_replicas_survive_a_subscriber_disconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = new_sim(auto=True)
    async with sim_replicas(sim) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("t0"))
        [b_sub] = [c for c in sim.connections() if c.startswith("b/s")]
        sim.disconnect(b_sub)
        for i in range(1, 4):
            await a.emit_chunk("s1", delta(f"t{i}"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
        assert [c for c in sim.connections() if c.startswith("b/s")] == ["b/s1"]
    assert texts(events) == [f"t{i}" for i in range(4)]
    assert isinstance(events[-1], Done)
    assert sim.statistics().disconnects == 1
    assert any(line.endswith("open b/s1") for line in sim.trace)


async def test_replicas_survive_a_failover(autojump_clock: trio.testing.MockClock) -> None:
    sim = new_sim(auto=True, with_replica=True)
    async with sim_replicas(sim) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("t0"))
        sim.replicate(10_000)
        await a.emit_chunk("s1", delta("t1"))  # delivered live, never replicated
        sim.failover()
        await trio.sleep(1)  # the buses reconnect
        for i in range(2, 4):
            assert await a.emit_chunk("s1", delta(f"t{i}"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    assert texts(events) == [f"t{i}" for i in range(4)]
    assert isinstance(events[-1], Done)
    assert sim.statistics().writes_lost >= 1


async def test_lua_shortcuts_keep_script_semantics() -> None:
    # The engine compiles each script once and skips fakeredis's per-call globals scan
    # (properties/sim/_engine.py); a script that sets a global must still fail, and the
    # replaced fakeredis method must still have the signature the copy was made from.
    import inspect

    from fakeredis.commands_mixins.scripting_mixin import ScriptingCommandsMixin

    original = inspect.signature(ScriptingCommandsMixin._lua_redis_call)
    assert list(original.parameters) == ["self", "lua_runtime", "expected_globals", "op", "args"]
    engine = Engine(None)
    now = EPOCH
    script = b"local n = redis.call('INCR', KEYS[1]) return {n, redis.pcall('NOPE')['err']}"
    reply = engine.execute([b"EVAL", script, b"1", b"n"], now)
    assert reply[0] == 1 and b"nknown" in reply[1]
    assert engine.execute([b"EVAL", script, b"1", b"n"], now)[0] == 2
    bad = engine.execute([b"EVAL", b"leak = 1 return 1", b"0"], now)
    assert "global" in str(bad).lower()
