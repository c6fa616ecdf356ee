"""The Redis bus over the simulated Redis: acknowledged, shared, retried subscriptions."""

from __future__ import annotations

import trio
import trio.testing

from streamcheck.impl.redis import RedisConnectionError
from streamcheck.impl.transport import RedisBus
from streamcheck.impl.transport._envelope import AbortSignal
from streamcheck.model import SequencedEvent
from streamcheck.properties.sim import SimRedis, sim_time

EPOCH = 1_700_000_000.0


class RecordingSink:
    def __init__(self) -> None:
        self.restored_ids: list[str] = []

    def deliver(self, stream_id: str, message: SequencedEvent | AbortSignal) -> None:
        pass

    def reads(self, stream_id: str) -> bool:
        return True

    def restored(self, stream_id: str) -> None:
        self.restored_ids.append(stream_id)

    def malformed(self, stream_id: str | None, reason: str) -> None:
        pass


async def test_failed_subscribe_is_retried_by_the_next_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with sim_time(lambda: EPOCH + trio.current_time()):
        sim = SimRedis(clock=lambda: EPOCH + trio.current_time())
        bus = RedisBus(sim.client("a"))
        bus.attach_sink(RecordingSink())
        results: list[tuple[str, str]] = []

        async def acquire(tag: str) -> None:
            try:
                await bus.acquire_channel("s1")
                results.append((tag, "ok"))
            except RedisConnectionError:
                results.append((tag, "failed"))

        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            nursery.start_soon(acquire, "first")
            await trio.testing.wait_all_tasks_blocked()
            [subscribe] = [i for i in sim.runnable() if "SUBSCRIBE" in i.description]
            sim.step(subscribe.id, lose_reply=True)  # the connection dies before the ack
            await trio.testing.wait_all_tasks_blocked()
            assert results == [("first", "failed")]
            assert bus.subscribed_channels() == frozenset()

            nursery.start_soon(acquire, "second")
            with trio.fail_after(30):
                while len(results) < 2:
                    sim.run_until_quiet()
                    await trio.sleep(0.05)  # the bus reconnects after its backoff
            assert results[1] == ("second", "ok")
            assert bus.subscribed_channels() == frozenset({"s1"})
            nursery.cancel_scope.cancel()


async def test_concurrent_subscribers_share_one_acknowledged_subscribe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with sim_time(lambda: EPOCH + trio.current_time()):
        sim = SimRedis(clock=lambda: EPOCH + trio.current_time())
        bus = RedisBus(sim.client("a"))
        bus.attach_sink(RecordingSink())
        done: list[int] = []

        async def acquire(tag: int) -> None:
            await bus.acquire_channel("s1")
            done.append(tag)

        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            for tag in range(3):
                nursery.start_soon(acquire, tag)
            await trio.testing.wait_all_tasks_blocked()
            subscribes = [i for i in sim.runnable() if "SUBSCRIBE" in i.description]
            assert len(subscribes) == 1
            sim.step(subscribes[0].id)
            await trio.testing.wait_all_tasks_blocked()
            assert done == []  # executed, but the acknowledgement is not delivered yet
            sim.run_until_quiet()
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(done) == [0, 1, 2]
            nursery.cancel_scope.cancel()
