"""The stepped loop: a trio run in a greenlet, driven one piece of work at a time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from streamcheck.properties._stepped_loop import LoopFinished, SteppedLoop, WorldStalled


class _World:
    """A world with one background task that counts what it is sent."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.quiet_after_each: list[bool] = []
        self.closed = False
        self.send: trio.MemorySendChannel[int] | None = None
        self.clock = trio.testing.MockClock()

    async def setup(self, nursery: trio.Nursery) -> None:
        send, receive = trio.open_memory_channel[int](10)
        self.send = send
        nursery.start_soon(self._count, receive)

    async def _count(self, receive: trio.MemoryReceiveChannel[int]) -> None:
        async for value in receive:
            if value < 0:
                raise ValueError("a world task failed")
            self.seen.append(value)

    def after_each(self) -> None:
        assert self.send is not None
        self.quiet_after_each.append(self.send.statistics().current_buffer_used == 0)

    def on_close(self) -> None:
        self.closed = True

    def loop(self) -> SteppedLoop:
        return SteppedLoop(
            self.setup, clock=self.clock, after_each=self.after_each, on_close=self.on_close
        )


def _send(world: _World, value: int) -> None:
    assert world.send is not None
    world.send.send_nowait(value)


def test_each_piece_of_work_runs_until_every_task_is_blocked() -> None:
    world = _World()
    loop = world.loop()
    try:
        for value in (1, 2, 3):
            loop.run(lambda v=value: _send(world, v))  # type: ignore[misc]
            assert world.seen[-1] == value  # the background task already ran
        assert world.quiet_after_each == [True, True, True]
    finally:
        loop.close()
    assert world.closed and loop.finished


def test_async_work_is_awaited_and_time_moves_only_when_told() -> None:
    world = _World()
    loop = world.loop()

    async def checkpoint_then_send() -> None:
        await trio.lowlevel.checkpoint()
        _send(world, 9)

    try:
        loop.run(checkpoint_then_send)
        assert world.seen == [9]
        assert world.clock.current_time() == 0
        loop.run(lambda: world.clock.jump(5))
        assert world.clock.current_time() == 5
    finally:
        loop.close()


def test_work_that_raises_raises_in_the_caller_and_the_loop_goes_on() -> None:
    world = _World()
    loop = world.loop()

    def fail() -> None:
        raise KeyError("bad work")

    try:
        with pytest.raises(KeyError, match="bad work"):
            loop.run(fail)
        loop.run(lambda: _send(world, 7))
        assert world.seen == [7]
    finally:
        loop.close()


def test_a_world_task_that_raises_ends_the_loop_with_its_error() -> None:
    world = _World()
    loop = world.loop()
    with pytest.raises(LoopFinished) as caught:
        loop.run(lambda: _send(world, -1))
    assert loop.finished
    assert isinstance(loop.crash, BaseExceptionGroup)
    assert caught.value.__cause__ is loop.crash
    with pytest.raises(LoopFinished):
        loop.run(lambda: None)
    loop.close()  # closing a finished loop is a no-op


def test_the_caller_is_never_inside_the_run_and_two_loops_live_side_by_side() -> None:
    first, second = _World(), _World()
    loop_a, loop_b = first.loop(), second.loop()
    try:
        with pytest.raises(RuntimeError):
            trio.lowlevel.current_task()  # the caller is outside both runs
        loop_a.run(lambda: _send(first, 1))
        loop_b.run(lambda: _send(second, 2))
        loop_a.run(lambda: _send(first, 3))
        assert (first.seen, second.seen) == ([1, 3], [2])
    finally:
        loop_b.close()
        loop_a.close()


async def test_a_loop_can_be_driven_from_inside_another_trio_run() -> None:
    world = _World()
    loop = world.loop()
    try:
        loop.run(lambda: _send(world, 4))
    finally:
        loop.close()
    assert world.seen == [4]
    await trio.lowlevel.checkpoint()  # this test's own run is intact


def test_an_interrupt_inside_the_run_reaches_the_caller() -> None:
    world = _World()
    loop = world.loop()

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(BaseException) as caught:
        loop.run(interrupt)
    raised = caught.value
    if isinstance(raised, BaseExceptionGroup):  # trio's nursery wraps what a task raised
        assert raised.subgroup(KeyboardInterrupt) is not None
    else:
        assert isinstance(raised, KeyboardInterrupt)
    assert loop.finished and loop.crash is None
    loop.close()


def test_work_that_waits_for_nothing_is_answered_as_stalled_and_the_loop_goes_on() -> None:
    world = _World()
    loop = SteppedLoop(
        world.setup,
        clock=world.clock,
        after_each=world.after_each,
        on_close=world.on_close,
        stall_seconds=0.2,
    )
    never = trio.Event()
    try:
        with pytest.raises(WorldStalled, match="deadlock"):
            loop.run(never.wait)
        loop.run(lambda: _send(world, 5))
        assert world.seen == [5]
    finally:
        loop.close()


def test_a_world_task_that_raises_lets_shielded_clean_ups_finish_through_on_close() -> None:
    # A clean-up that awaits, shielded, what only on_close releases (as the simulated
    # Redis answers by itself once told to): when another task raises, the run ends
    # with that task's error, the clean-up done, not with a stall.
    released = trio.Event()
    cleaned: list[bool] = []
    world = _World()

    async def setup(nursery: trio.Nursery) -> None:
        await world.setup(nursery)
        nursery.start_soon(clean_up_when_cancelled)

    async def clean_up_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await released.wait()
                cleaned.append(True)

    loop = SteppedLoop(
        setup,
        clock=world.clock,
        after_each=world.after_each,
        on_close=released.set,
        stall_seconds=0.5,
    )
    with pytest.raises(LoopFinished):
        loop.run(lambda: _send(world, -1))
    assert loop.finished and cleaned == [True]
    assert isinstance(loop.crash, BaseExceptionGroup)
    assert loop.crash.subgroup(WorldStalled) is None
    assert loop.crash.subgroup(ValueError) is not None
    loop.close()
