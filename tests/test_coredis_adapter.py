"""The coredis adapter against real Redis: standalone (shared or private server) and Cluster.

Destructive scenarios (killing connections, SCRIPT FLUSH, restarts, SIGSTOP) run against a
private server so they never disturb other tests sharing 127.0.0.1:6379.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import trio

from streamcheck.impl import BackendUnavailable
from streamcheck.impl.redis import (
    CoredisRedis,
    LuaScript,
    PubSubMessage,
    RedisConnectionError,
    RedisLike,
    Subscriber,
    SubscriptionsRestored,
    open_coredis,
)
from streamcheck.properties.realredis._proxy import Cut, Latency, open_fault_proxy
from tests.redis_support import (
    RedisServer,
    find_free_port,
    have_redis_binaries,
    open_redis,
    resp_call,
)

# Every test is bounded: a hang fails loudly instead of stalling the run.
TEST_DEADLINE_S = 10

ECHO = LuaScript(
    "echo",
    "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #KEYS, ARGV[2]}",
)

needs_binaries = pytest.mark.skipif(
    not have_redis_binaries(), reason="redis-server/redis-cli are not on PATH"
)


def _conforms(redis: CoredisRedis) -> RedisLike:
    """Static check (mypy): the adapter implements the RedisLike protocol."""
    return redis


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer() as server:
        yield server


def _kill_pubsub_clients(port: int) -> int:
    killed = resp_call(port, "CLIENT", "KILL", "TYPE", "pubsub")
    assert isinstance(killed, int)
    return killed


async def _next_message(sub: Subscriber, *, tolerated_restorations: int = 0) -> PubSubMessage:
    while True:
        event = await sub.receive()
        if isinstance(event, SubscriptionsRestored) and tolerated_restorations > 0:
            tolerated_restorations -= 1
            continue
        assert isinstance(event, PubSubMessage), event
        return event


# --- plain commands ------------------------------------------------------------------


async def test_commands_round_trip_with_the_protocol_shapes(
    redis_url: str, key_prefix: str
) -> None:
    tagged = f"{key_prefix}{{s1}}"
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(redis_url) as redis:
            assert not redis.is_cluster
            assert await redis.get(f"{tagged}:missing") is None
            assert await redis.exists(f"{tagged}:missing") is False
            assert await redis.hgetall(f"{tagged}:missing") == {}
            assert await redis.smembers(f"{tagged}:missing") == set()
            assert await redis.xrange(f"{tagged}:missing", "-", "+") == []

            result = await redis.run_script(ECHO, keys=[f"{tagged}:k"], args=["v", 7])
            assert result == ["v", 1, "7"]
            assert await redis.get(f"{tagged}:k") == "v"
            assert await redis.exists(f"{tagged}:k") is True
            assert await redis.expire(f"{tagged}:k", 60) is True

            assert await redis.sadd(f"{tagged}:set", "a", "b") == 2
            assert await redis.srem(f"{tagged}:set", "a") == 1
            assert await redis.smembers(f"{tagged}:set") == {"b"}
            assert await redis.scard(f"{tagged}:set") == 1

            await redis.raw.hset(f"{tagged}:h", {"status": "running", "n": "1"})
            assert await redis.hgetall(f"{tagged}:h") == {"status": "running", "n": "1"}

            await redis.raw.xadd(f"{tagged}:log", {"seq": "1", "type": "chunk"}, identifier="1-1")
            await redis.raw.xadd(f"{tagged}:log", {"seq": "2", "type": "done"}, identifier="2-1")
            assert await redis.xrange(f"{tagged}:log", "-", "+") == [
                ("1-1", {"seq": "1", "type": "chunk"}),
                ("2-1", {"seq": "2", "type": "done"}),
            ]
            assert await redis.xrange(f"{tagged}:log", "(1-1", "+", count=5) == [
                ("2-1", {"seq": "2", "type": "done"})
            ]

            keys = [f"{tagged}:{name}" for name in ("k", "set", "h", "log", "missing")]
            assert await redis.delete(*keys) == 4
            assert await redis.delete() == 0
            stats = redis.statistics()
            # 17 calls above (raw coredis calls and the empty delete issue no counted
            # command), plus one EVAL if the server did not have the script yet
            assert stats.commands == 17 + stats.script_loads
            assert stats.connection_errors == 0


async def test_body_exception_leaves_the_block_unwrapped(redis_url: str) -> None:
    # coredis's task group used to hand callers an ExceptionGroup around their own error.
    with trio.fail_after(TEST_DEADLINE_S), pytest.raises(KeyError, match=r"^'mine'$"):
        async with open_redis(redis_url):
            raise KeyError("mine")
    with trio.fail_after(TEST_DEADLINE_S), pytest.raises(LookupError, match=r"^inside$"):
        async with open_redis(redis_url) as redis, redis.subscriber():
            raise LookupError("inside")


async def test_backend_unavailable_names_the_url_with_the_password_redacted() -> None:
    port = find_free_port()
    url = f"redis://user:secret@127.0.0.1:{port}/0"
    with trio.fail_after(TEST_DEADLINE_S), pytest.raises(BackendUnavailable) as caught:
        async with open_coredis(url):
            pytest.fail("connected to a port nobody listens on")
    message = str(caught.value)
    assert message.startswith(f"cannot reach Redis at redis://user:***@127.0.0.1:{port}/0: ")
    assert "***" in message
    assert "secret" not in message
    assert caught.value.url == f"redis://user:***@127.0.0.1:{port}/0"
    # raised once, from None: no coredis ExceptionGroup (which repeats the URL) chained on
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_backend_unavailable_for_a_cluster_lists_every_startup_node() -> None:
    first, second = find_free_port(), find_free_port()
    url = f"redis://u:secret@127.0.0.1:{first},redis://u:secret@127.0.0.1:{second}"
    with trio.fail_after(TEST_DEADLINE_S), pytest.raises(BackendUnavailable) as caught:
        async with open_coredis(url, cluster=True):
            pytest.fail("connected to ports nobody listens on")
    message = str(caught.value)
    assert message.startswith(f"cannot reach Redis at redis://u:***@127.0.0.1:{first}: ")
    assert message.endswith(f"(startup nodes also tried: redis://u:***@127.0.0.1:{second})")
    assert "secret" not in message


@needs_binaries
async def test_backend_unavailable_on_wrong_password() -> None:
    with RedisServer(extra_args=("--requirepass", "right")) as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}"
        with trio.fail_after(TEST_DEADLINE_S), pytest.raises(BackendUnavailable) as caught:
            async with open_coredis(url):
                pytest.fail("authenticated with a wrong password")
        assert "authentication failed" in str(caught.value)
        assert "wrong" not in str(caught.value)
        async with open_coredis(f"redis://:right@127.0.0.1:{server.port}") as redis:
            assert await redis.get("nothing") is None


async def test_run_script_survives_script_flush(private_redis: RedisServer) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(private_redis.url) as redis:
            assert await redis.run_script(ECHO, keys=["{f}:a"], args=["1", "x"]) == ["1", 1, "x"]
            for round_ in range(3):
                assert resp_call(private_redis.port, "SCRIPT", "FLUSH") == "OK"
                result = await redis.run_script(ECHO, keys=["{f}:a"], args=[str(round_), "y"])
                assert result == [str(round_), 1, "y"]
            # once loaded, EVALSHA is enough: no reload without a flush
            loads = redis.statistics().script_loads
            await redis.run_script(ECHO, keys=["{f}:a"], args=["z", "z"])
            assert redis.statistics().script_loads == loads


async def test_commands_raise_redis_connection_error_while_the_server_is_down() -> None:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer() as server, trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(server.url) as redis:
            assert await redis.get("k") is None
            server.stop()
            with pytest.raises(RedisConnectionError):
                await redis.get("k")
            with pytest.raises(RedisConnectionError):
                await redis.run_script(ECHO, keys=["{d}:k"], args=["v", "v"])
            with pytest.raises(RedisConnectionError):
                async with redis.subscriber():
                    pytest.fail("opened a subscriber while the server is down")
            assert redis.statistics().connection_errors == 3
            server.start()
            assert await redis.get("k") is None


#: Counts its runs in KEYS[1] and says it ran on the list KEYS[2].
COUNT_RUNS = LuaScript(
    "count_runs", "redis.call('LPUSH', KEYS[2], 'ran'); return redis.call('INCR', KEYS[1])"
)


async def test_a_script_whose_reply_was_lost_is_not_run_again(
    redis_url: str, key_prefix: str
) -> None:
    # Found by the real-Redis tier across a Redis restart: coredis retries a command after
    # a connection error by default, so a publish script whose reply was lost with its
    # connection ran a second time and published the event again under a new seq. A
    # connection error now means "maybe done", and nothing is retried blindly.
    runs, ran = f"{key_prefix}{{retry}}:runs", f"{key_prefix}{{retry}}:ran"
    port = urlsplit(redis_url).port
    assert port is not None
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_redis(redis_url) as direct,
            open_fault_proxy(port) as proxy,
            open_coredis(f"redis://127.0.0.1:{proxy.port}") as redis,
        ):
            await redis.run_script(COUNT_RUNS, keys=[f"{runs}:warm-up", ran], args=[])
            await direct.raw.delete([ran])  # the script is loaded now
            proxy.inject(Latency(delay_s=1.0))  # each way: the reply lags the run by 1 s
            outcome: list[str] = []

            async def call() -> None:
                try:
                    await redis.run_script(COUNT_RUNS, keys=[runs, ran], args=[])
                    outcome.append("returned")
                except RedisConnectionError:
                    outcome.append("connection error")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                assert await direct.raw.blpop([ran], timeout=5)  # Redis has run it
                proxy.inject(Cut())  # its reply, still in the proxy, is lost
            assert outcome == ["connection error"]
            assert await direct.get(runs) == "1"


# --- the pool-slot leak (docs/redis.md) ---------------------------------------------


async def test_pool_keeps_its_slots_after_leased_connections_die(
    private_redis: RedisServer,
) -> None:
    # coredis 6.9 never gave back the pool slot of a connection that died while leased (a
    # cancelled blocking command closes its connection): with 4 slots, the 4th cancelled
    # BLPOP left no slot and every later command waited forever. On a private server:
    # the GET's 2 s bound must not depend on what other clients do to a shared one.
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_coredis(private_redis.url, max_connections=4) as redis:
            for _ in range(10):
                with trio.move_on_after(0.02):
                    await redis.raw.blpop([f"t:never:{time.monotonic_ns()}"], timeout=5)
            with trio.fail_after(2):
                assert await redis.get("t:never:key") is None


async def test_pool_keeps_its_slots_after_pubsub_reconnections(
    private_redis: RedisServer,
) -> None:
    # The same leak through pub/sub: every reconnection of a subscriber leased a new
    # connection and lost the dead one's slot.
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_coredis(private_redis.url, max_connections=4) as redis,
            redis.subscriber() as sub,
        ):
            await sub.subscribe("leak")
            for _ in range(6):
                assert _kill_pubsub_clients(private_redis.port) == 1
                assert isinstance(await sub.receive(), SubscriptionsRestored)
            with trio.fail_after(2):
                assert await redis.publish("leak", "still") == 1
            assert await _next_message(sub) == PubSubMessage(channel="leak", data="still")


# --- pub/sub -------------------------------------------------------------------------


async def test_subscribe_returns_only_after_the_server_acknowledged(
    redis_url: str, key_prefix: str
) -> None:
    channel = f"{key_prefix}stream:{{ack}}:events"
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_redis(redis_url) as listener,
            open_redis(redis_url) as publisher,
            listener.subscriber() as sub,
        ):
            for round_ in range(20):
                name = f"{channel}:{round_}"
                await sub.subscribe(name)
                # no sleep: the subscription must already exist on the server
                assert await publisher.publish(name, f"m{round_}") >= 1
                assert await _next_message(sub) == PubSubMessage(name, f"m{round_}")


async def test_unsubscribe_stops_delivery_and_resubscribe_is_idempotent(
    redis_url: str, key_prefix: str
) -> None:
    a, b = f"{key_prefix}a", f"{key_prefix}b"
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(redis_url) as redis, redis.subscriber() as sub:
            await sub.subscribe(a)
            await sub.subscribe(a)  # already subscribed: no second ack, no false restoration
            await sub.subscribe(b)
            await redis.publish(a, "1")
            assert await _next_message(sub) == PubSubMessage(a, "1")
            await redis.publish(a, "in flight")
            await sub.unsubscribe(a)
            await sub.unsubscribe(a)
            assert await redis.publish(a, "nobody listens") == 0
            await redis.publish(b, "2")
            # "in flight" was published before the unsubscribe but is dropped after it
            assert await _next_message(sub) == PubSubMessage(b, "2")
            assert sub.statistics().dropped == 1
            stats = sub.statistics()
            assert (stats.channels, stats.messages, stats.restorations) == (1, 2, 0)


async def test_restoration_is_reported_once_per_reconnection(private_redis: RedisServer) -> None:
    channels = {f"stream:{{r{i}}}:events" for i in range(3)}
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(private_redis.url) as redis, redis.subscriber() as sub:
            for channel in sorted(channels):
                await sub.subscribe(channel)
            await redis.publish("stream:{r0}:events", "before")
            assert await _next_message(sub) == PubSubMessage("stream:{r0}:events", "before")

            for reconnection in range(1, 3):
                assert _kill_pubsub_clients(private_redis.port) == 1
                # three acks come back per reconnection; they make one notice
                assert await sub.receive() == SubscriptionsRestored(frozenset(channels))
                for channel in sorted(channels):
                    assert await redis.publish(channel, f"after{reconnection}") == 1
                for channel in sorted(channels):
                    assert await _next_message(sub) == PubSubMessage(
                        channel, f"after{reconnection}"
                    )
            assert sub.statistics().restorations == 2
            assert redis.statistics().restorations == 2


async def test_restoration_after_a_server_restart(private_redis: RedisServer) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(private_redis.url) as redis, redis.subscriber() as sub:
            await sub.subscribe("restart")
            private_redis.restart()
            assert await sub.receive() == SubscriptionsRestored(frozenset({"restart"}))
            assert await redis.publish("restart", "back") == 1
            assert await _next_message(sub) == PubSubMessage("restart", "back")


async def test_subscribe_without_an_ack_raises_redis_connection_error(
    private_redis: RedisServer,
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(private_redis.url) as redis, redis.subscriber() as sub:
            await sub.subscribe("first")
            private_redis.pause()
            try:
                started = time.monotonic()
                with pytest.raises(RedisConnectionError, match=r"could not subscribe to 'frozen'"):
                    await sub.subscribe("frozen")
                assert time.monotonic() - started < 3
            finally:
                private_redis.resume()
            # Subscribing again works. The failed SUBSCRIBE's late ack can't be told from a
            # reconnection's, so one spurious (harmless) restoration notice is allowed.
            await sub.subscribe("frozen")
            await redis.publish("frozen", "thawed")
            thawed = await _next_message(sub, tolerated_restorations=1)
            assert thawed == PubSubMessage("frozen", "thawed")
            assert sub.statistics().channels == 2


# --- Redis Cluster -------------------------------------------------------------------


@pytest.mark.cluster
async def test_cluster_commands_scripts_and_pubsub(redis_cluster_url: str, key_prefix: str) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(redis_cluster_url, cluster=True) as redis:
            assert redis.is_cluster
            # streams whose ids hash to different slots (and so, mostly, different nodes)
            for stream in ("alpha", "beta", "gamma", "delta"):
                tag = f"{key_prefix}stream:{{{stream}}}"
                assert await redis.run_script(
                    ECHO, keys=[f"{tag}:seq", f"{tag}:job"], args=["1", "s"]
                ) == ["1", 2, "s"]
                assert await redis.sadd(f"{tag}:set", "x") == 1
                assert await redis.expire(f"{tag}:set", 60) is True
                assert await redis.delete(f"{tag}:seq", f"{tag}:set", f"{tag}:job") == 2

            # SCRIPT FLUSH on every node: EVALSHA misses, EVAL reloads on the owning node
            for port in _cluster_ports(redis_cluster_url):
                assert resp_call(port, "SCRIPT", "FLUSH") == "OK"
            tag = f"{key_prefix}stream:{{alpha}}"
            assert await redis.run_script(ECHO, keys=[f"{tag}:seq"], args=["2", "t"]) == [
                "2",
                1,
                "t",
            ]
            await redis.delete(f"{tag}:seq")

            async with redis.subscriber() as sub:
                channels = [f"stream:{{{key_prefix}{i}}}:events" for i in range(6)]
                for channel in channels:
                    await sub.subscribe(channel)
                for channel in channels:
                    await redis.publish(channel, channel[-12:])
                received = [await _next_message(sub) for _ in channels]
                assert sorted(m.channel for m in received) == sorted(channels)
                assert all(m.data == m.channel[-12:] for m in received)

                # the subscriber's node drops it: coredis reconnects (to any node) and we
                # report it once
                killed = sum(
                    _kill_pubsub_clients(port) for port in _cluster_ports(redis_cluster_url)
                )
                assert killed >= 1
                assert await sub.receive() == SubscriptionsRestored(frozenset(channels))
                await redis.publish(channels[0], "after")
                # A node relays a PUBLISH to the others over the cluster bus asynchronously,
                # so the node we reconnected to may still deliver an earlier message late.
                while (message := await _next_message(sub)).data != "after":
                    assert message in received
                assert message == PubSubMessage(channels[0], "after")


@pytest.mark.cluster
async def test_cluster_pool_keeps_its_slots_after_leased_connections_die(
    redis_cluster_url: str, key_prefix: str
) -> None:
    # the cluster pool had the same leak, per node (4 slots per node here)
    key = f"{key_prefix}{{leak}}:list"
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_coredis(redis_cluster_url, cluster=True, max_connections=4) as redis:
            for _ in range(10):
                with trio.move_on_after(0.02):
                    await redis.raw.blpop([key], timeout=5)
            with trio.fail_after(2):
                assert await redis.get(key) is None


@pytest.mark.cluster
async def test_cluster_accepts_several_startup_nodes(redis_cluster_url: str) -> None:
    ports = _cluster_ports(redis_cluster_url)
    url = ",".join(f"redis://127.0.0.1:{port}" for port in [find_free_port(), *ports])
    with trio.fail_after(TEST_DEADLINE_S):
        # the first node is down; discovery goes on with the others
        async with open_redis(url, cluster=True) as redis:
            assert await redis.get("{x}:absent") is None


def _cluster_ports(url: str) -> list[int]:
    """Every node's port, from CLUSTER NODES (lines: ``<id> <ip>:<port>@<bus> ...``)."""
    port = urlsplit(url).port
    assert port is not None
    nodes = resp_call(port, "CLUSTER", "NODES")
    assert isinstance(nodes, str)
    return sorted(
        int(line.split()[1].split("@")[0].rsplit(":", 1)[1]) for line in nodes.splitlines()
    )
