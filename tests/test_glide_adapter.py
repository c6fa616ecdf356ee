"""The valkey-glide adapter against real Redis: command shapes, the restoration signal, a
connect that never blocks the event loop, and the one-trio-run-per-process guard.

Destructive scenarios (killing connections, SCRIPT FLUSH) run against a private server so
they never disturb other tests sharing 127.0.0.1:6379. Skipped where glide is not
installed (the ``glide`` extra).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import trio

from streamcheck.impl import BackendUnavailable, StreamConfig
from streamcheck.impl.redis import (
    GlideRunConflict,
    LuaScript,
    PubSubMessage,
    RedisConnectionError,
    RedisLike,
    SubscriptionsRestored,
    glide_available,
)
from tests.redis_support import RedisServer, find_free_port, have_redis_binaries, resp_call

pytestmark = pytest.mark.skipif(not glide_available(), reason="valkey-glide is not installed")

if glide_available():
    from streamcheck.impl.redis._glide import GlideRedis, open_glide
    from streamcheck.impl.redis._glide_subscriber import RESTORE_TIMEOUT_S

# Every test is bounded: a hang fails loudly instead of stalling the run.
TEST_DEADLINE_S = 10

ECHO = LuaScript(
    "echo",
    "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #KEYS, ARGV[2]}",
)


def _conforms(redis: GlideRedis) -> RedisLike:
    """Static check (mypy): the adapter implements the RedisLike protocol."""
    return redis


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer() as server:
        yield server


async def test_commands_round_trip_with_the_protocol_shapes(
    redis_url: str, key_prefix: str
) -> None:
    tagged = f"{key_prefix}{{s1}}"
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_glide(redis_url) as redis:
            assert not redis.is_cluster
            assert await redis.get(f"{tagged}:missing") is None
            assert await redis.exists(f"{tagged}:missing") is False
            assert await redis.hgetall(f"{tagged}:missing") == {}
            assert await redis.smembers(f"{tagged}:missing") == set()
            assert await redis.xrange(f"{tagged}:missing", "-", "+") == []

            assert await redis.run_script(ECHO, keys=[f"{tagged}:k"], args=["v", 7]) == [
                "v",
                1,
                "7",
            ]
            assert await redis.get(f"{tagged}:k") == "v"
            assert await redis.exists(f"{tagged}:k") is True
            assert await redis.expire(f"{tagged}:k", 60) is True

            assert await redis.sadd(f"{tagged}:set", "a", "b") == 2
            assert await redis.srem(f"{tagged}:set", "a") == 1
            assert await redis.smembers(f"{tagged}:set") == {"b"}
            assert await redis.scard(f"{tagged}:set") == 1

            await redis.raw.hset(f"{tagged}:h", {"status": "running", "n": "1"})
            assert await redis.hgetall(f"{tagged}:h") == {"status": "running", "n": "1"}

            for entry, kind in (("1-1", "chunk"), ("2-1", "done")):
                await redis.raw.custom_command(
                    ["XADD", f"{tagged}:log", entry, "seq", entry[0], "type", kind]
                )
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
            assert redis.statistics().connection_errors == 0


async def test_batched_scripts_reload_after_a_script_flush_and_run_once(
    private_redis: RedisServer,
) -> None:
    counter = LuaScript("count", "return redis.call('INCR', KEYS[1])")
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_glide(private_redis.url) as redis:
            assert await redis.run_script(counter, keys=["glide:n"], args=[]) == 1
            resp_call(private_redis.port, "SCRIPT", "FLUSH")
            replies: list[int] = []

            async def call() -> None:
                reply = await redis.run_script(counter, keys=["glide:n"], args=[])
                assert isinstance(reply, int)
                replies.append(reply)

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(call)
            # NOSCRIPT means the script did not run: EVAL runs each exactly once more.
            assert sorted(replies) == list(range(2, 10))
            assert await redis.get("glide:n") == "9"
            assert redis.statistics().script_loads >= 1
            assert redis.batching().round_trips < redis.batching().calls
            await redis.delete("glide:n")


async def test_a_killed_subscriber_is_restored_and_says_so(private_redis: RedisServer) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_glide(private_redis.url) as redis,
            open_glide(private_redis.url) as publisher,
            redis.subscriber() as sub,
        ):
            await sub.subscribe("glide:a")
            await sub.subscribe("glide:b")
            assert await publisher.publish("glide:a", "before") == 1
            assert await sub.receive() == PubSubMessage(channel="glide:a", data="before")
            assert resp_call(private_redis.port, "CLIENT", "KILL", "TYPE", "pubsub") == 1
            killed_at = time.monotonic()
            event = await sub.receive()
            assert event == SubscriptionsRestored(channels=frozenset({"glide:a", "glide:b"}))
            # Restored: the server has the subscriber again, so a publish now reaches it.
            assert time.monotonic() - killed_at < RESTORE_TIMEOUT_S
            assert await publisher.publish("glide:b", "after") == 1
            assert await sub.receive() == PubSubMessage(channel="glide:b", data="after")
            assert redis.statistics().restorations == 1


async def test_many_concurrent_subscribes_are_acknowledged_without_restoration_notices(
    private_redis: RedisServer,
) -> None:
    # Subscribing moves glide's wanted set ahead of the confirmed one for a moment; that
    # must not look like a lost connection to the watcher.
    channels = [f"glide:many:{i}" for i in range(200)]
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_glide(private_redis.url) as redis,
            open_glide(private_redis.url) as publisher,
            redis.subscriber() as sub,
        ):
            async with trio.open_nursery() as nursery:
                for channel in channels:
                    nursery.start_soon(sub.subscribe, channel)
            for channel in channels:
                assert await publisher.publish(channel, channel) == 1
            received = [await sub.receive() for _ in channels]
            await trio.sleep(0.3)  # a few watcher polls after the last subscribe
    assert received == [PubSubMessage(channel=c, data=c) for c in channels]
    assert redis.statistics().restorations == 0


async def test_unsubscribed_channels_are_dropped_and_not_restored(
    private_redis: RedisServer,
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with (
            open_glide(private_redis.url) as redis,
            open_glide(private_redis.url) as publisher,
            redis.subscriber() as sub,
        ):
            await sub.subscribe("glide:keep")
            await sub.subscribe("glide:drop")
            await sub.unsubscribe("glide:drop")
            await publisher.publish("glide:drop", "late")
            await publisher.publish("glide:keep", "kept")
            assert await sub.receive() == PubSubMessage(channel="glide:keep", data="kept")
            resp_call(private_redis.port, "CLIENT", "KILL", "TYPE", "pubsub")
            assert await sub.receive() == SubscriptionsRestored(channels=frozenset({"glide:keep"}))


async def test_an_unreachable_server_fails_fast_without_blocking_the_event_loop() -> None:
    # glide's create() connects while holding the event loop unless the connection is
    # made lazily, by the first command: the loop must keep ticking during the attempt.
    port = find_free_port()
    longest_gap = 0.0

    async def tick(stop: trio.Event) -> None:
        nonlocal longest_gap
        last = time.monotonic()
        while not stop.is_set():
            await trio.sleep(0.01)
            now = time.monotonic()
            longest_gap = max(longest_gap, now - last)
            last = now

    stop = trio.Event()
    with trio.fail_after(TEST_DEADLINE_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick, stop)
            with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1") as raised:
                async with open_glide(f"redis://:secret@127.0.0.1:{port}", connect_timeout=1.5):
                    pass
            stop.set()
    assert "secret" not in str(raised.value)
    assert longest_gap < 0.5, longest_gap


async def test_wrong_password_is_backend_unavailable_and_redacted() -> None:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer(extra_args=("--requirepass", "right")) as server:
        with trio.fail_after(TEST_DEADLINE_S), pytest.raises(BackendUnavailable) as raised:
            async with open_glide(f"redis://:wrong@127.0.0.1:{server.port}", connect_timeout=3):
                pass
        assert "wrong" not in str(raised.value)
        async with open_glide(f"redis://:right@127.0.0.1:{server.port}") as redis:
            assert await redis.get("glide:none") is None


async def test_subscribe_to_a_dead_server_is_a_bounded_connection_error() -> None:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer() as server, trio.fail_after(TEST_DEADLINE_S):
        async with open_glide(server.url) as redis, redis.subscriber() as sub:
            server.stop()
            with pytest.raises(RedisConnectionError):
                await sub.subscribe("glide:never")


def test_a_second_concurrent_trio_run_is_refused_and_a_later_one_works(redis_url: str) -> None:
    # glide reads replies through one pipe per process bound to one trio run: two runs at
    # once would stall each other, so the second is refused; sequential runs each create
    # their own clients and work.
    holding = threading.Event()
    release = threading.Event()
    outcome: list[BaseException | None] = []

    async def hold() -> None:
        async with open_glide(redis_url) as redis:
            await redis.get("glide:none")
            holding.set()
            await trio.to_thread.run_sync(release.wait)

    async def second() -> None:
        try:
            async with open_glide(redis_url):
                outcome.append(None)
        except GlideRunConflict as exc:
            outcome.append(exc)

    holder = threading.Thread(target=trio.run, args=(hold,))
    holder.start()
    try:
        assert holding.wait(TEST_DEADLINE_S)
        trio.run(second)
    finally:
        release.set()
        holder.join(TEST_DEADLINE_S)
    assert isinstance(outcome[0], GlideRunConflict)

    async def later() -> str | None:
        async with open_glide(redis_url) as redis:
            return await redis.get("glide:none")

    assert trio.run(later) is None


def test_the_client_is_chosen_by_configuration() -> None:
    config = StreamConfig.from_env(
        {"USE_REDIS": "true", "REDIS_URI": "redis://h", "STREAMCHECK_REDIS_CLIENT": "glide"}
    )
    assert config.redis_client == "glide"
    assert StreamConfig.from_env({}).redis_client == "coredis"
    with pytest.raises(ValueError, match="STREAMCHECK_REDIS_CLIENT"):
        StreamConfig.from_env({"STREAMCHECK_REDIS_CLIENT": "hiredis"})
