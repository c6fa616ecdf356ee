"""The script batcher: coalescing, per-call outcomes and cancellation with a scripted
``send``; then on real Redis (standalone and Cluster) through the coredis adapter."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from streamcheck.impl.redis import LuaScript, RedisConnectionError
from streamcheck.impl.redis._batching import Outcome, ScriptBatcher, ScriptCall
from tests.redis_support import RedisServer, have_redis_binaries, open_redis, resp_call

TEST_DEADLINE_S = 10
COUNT = LuaScript("count", "return redis.call('INCR', KEYS[1])")
ECHO = LuaScript("echo-arg", "return ARGV[1]")


class _ScriptedSend:
    """Answers each call with its first arg; the first batch waits until released, so
    that calls made meanwhile pile up for the second one."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release_first = trio.Event()
        self.failing: set[str] = set()
        self.fail_whole_batch = False

    async def __call__(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        self.batches.append([str(c.args[0]) for c in calls])
        if len(self.batches) == 1:
            await self.release_first.wait()
        if self.fail_whole_batch:
            raise RedisConnectionError("connection reset")
        return [
            ValueError(f"bad {c.args[0]}") if c.args[0] in self.failing else c.args[0]
            for c in calls
        ]


def _call(tag: str) -> ScriptCall:
    return ScriptCall(ECHO, keys=["k"], args=[tag])


async def test_calls_made_during_a_round_trip_share_the_next_one() -> None:
    send = _ScriptedSend()
    batcher = ScriptBatcher(send)
    results: dict[str, object] = {}

    async def caller(tag: str) -> None:
        results[tag] = await batcher.call(_call(tag))

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        nursery.start_soon(caller, "first")
        await trio.testing.wait_all_tasks_blocked()
        for tag in ("a", "b", "c", "d"):
            nursery.start_soon(caller, tag)
            await trio.testing.wait_all_tasks_blocked()
        send.release_first.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert send.batches == [["first"], ["a", "b", "c", "d"]]
    assert results == {t: t for t in ("first", "a", "b", "c", "d")}
    stats = batcher.statistics()
    assert (stats.calls, stats.round_trips, stats.largest_batch) == (5, 2, 4)


async def test_a_call_with_nothing_in_flight_goes_out_from_its_callers_task() -> None:
    senders: list[trio.lowlevel.Task] = []

    async def send(calls: Sequence[ScriptCall]) -> list[Outcome]:
        senders.append(trio.lowlevel.current_task())
        await trio.lowlevel.checkpoint()
        return [c.args[0] for c in calls]

    batcher = ScriptBatcher(send)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        assert await batcher.call(_call("alone")) == "alone"
        assert await batcher.call(_call("alone again")) == "alone again"
        nursery.cancel_scope.cancel()
    assert senders == [trio.lowlevel.current_task()] * 2
    stats = batcher.statistics()
    assert (stats.calls, stats.round_trips, stats.largest_batch) == (2, 2, 1)


async def test_a_failed_call_fails_only_its_caller() -> None:
    send = _ScriptedSend()
    send.release_first.set()
    send.failing.add("bad")
    batcher = ScriptBatcher(send)
    outcomes: dict[str, object] = {}

    async def caller(tag: str) -> None:
        try:
            outcomes[tag] = await batcher.call(_call(tag))
        except ValueError as exc:
            outcomes[tag] = str(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        for tag in ("ok1", "bad", "ok2"):
            nursery.start_soon(caller, tag)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert outcomes == {"ok1": "ok1", "bad": "bad bad", "ok2": "ok2"}


async def test_a_batch_lost_as_a_whole_fails_every_caller_and_the_next_batch_runs() -> None:
    send = _ScriptedSend()
    send.release_first.set()
    send.fail_whole_batch = True
    batcher = ScriptBatcher(send)
    failures: list[str] = []

    async def caller(tag: str) -> None:
        with pytest.raises(RedisConnectionError):
            await batcher.call(_call(tag))
        failures.append(tag)

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        for tag in ("a", "b", "c"):
            nursery.start_soon(caller, tag)
        await trio.testing.wait_all_tasks_blocked()
        send.fail_whole_batch = False
        assert await batcher.call(_call("after")) == "after"
        nursery.cancel_scope.cancel()
    assert sorted(failures) == ["a", "b", "c"]


async def test_a_caller_cancelled_before_its_batch_left_is_never_sent() -> None:
    send = _ScriptedSend()
    batcher = ScriptBatcher(send)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        nursery.start_soon(batcher.call, _call("first"))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.01):
            await batcher.call(_call("cancelled"))
        nursery.start_soon(batcher.call, _call("kept"))
        await trio.testing.wait_all_tasks_blocked()
        send.release_first.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert send.batches == [["first"], ["kept"]]


async def test_calls_left_when_the_batcher_stops_fail_as_connection_errors() -> None:
    send = _ScriptedSend()
    batcher = ScriptBatcher(send)
    errors: list[BaseException] = []

    async def caller(tag: str) -> None:
        try:
            await batcher.call(_call(tag))
        except RedisConnectionError as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer, trio.open_nursery() as inner:
        await inner.start(batcher.run)
        outer.start_soon(caller, "in-flight")
        await trio.testing.wait_all_tasks_blocked()
        outer.start_soon(caller, "queued")
        await trio.testing.wait_all_tasks_blocked()
        inner.cancel_scope.cancel()
    assert sorted(str(e) for e in errors) == [
        "the Redis client closed before the call",
        "the Redis client closed with the call in flight",
    ]
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.call(_call("late"))


# --- real Redis ------------------------------------------------------------------------


async def _count_concurrently(url: str, key: str, calls: int, *, cluster: bool = False) -> int:
    async with open_redis(url, cluster=cluster) as redis:
        replies: list[int] = []

        async def one() -> None:
            replies.append(int(str(await redis.run_script(COUNT, keys=[key], args=[]))))

        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(one)
        # each script ran exactly once: the replies are 1..calls, in some order
        assert sorted(replies) == list(range(1, calls + 1))
        stats = redis.batching()
        assert stats.calls == calls
        assert stats.round_trips < calls
        await redis.delete(key)
        return stats.largest_batch


async def test_concurrent_scripts_share_round_trips_and_each_runs_once(
    redis_url: str, key_prefix: str
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        largest = await _count_concurrently(redis_url, f"{key_prefix}batch:count", 200)
    assert largest > 1


async def test_a_batch_after_script_flush_runs_every_script_once() -> None:
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH")
    with RedisServer() as server, trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(server.url) as redis:
            await redis.run_script(COUNT, keys=["warm"], args=[])
            assert resp_call(server.port, "SCRIPT", "FLUSH") == "OK"
            replies: list[int] = []

            async def one(i: int) -> None:
                replies.append(int(str(await redis.run_script(COUNT, keys=[f"k{i % 3}"], args=[]))))

            async with trio.open_nursery() as nursery:
                for i in range(30):
                    nursery.start_soon(one, i)
            assert sorted(replies) == sorted(list(range(1, 11)) * 3)
            assert redis.statistics().script_loads >= 1


@pytest.mark.cluster
async def test_cluster_batches_span_nodes(redis_cluster_url: str, key_prefix: str) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with open_redis(redis_cluster_url, cluster=True) as redis:
            keys = [f"{key_prefix}stream:{{b{i}}}:seq" for i in range(12)]
            replies: dict[str, list[int]] = {k: [] for k in keys}

            async def one(key: str) -> None:
                replies[key].append(int(str(await redis.run_script(COUNT, keys=[key], args=[]))))

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    for key in keys:
                        nursery.start_soon(one, key)
            assert all(sorted(r) == [1, 2, 3, 4, 5] for r in replies.values())
            assert redis.batching().largest_batch > 1
            for key in keys:
                await redis.delete(key)
