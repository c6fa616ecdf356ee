"""The turn of a stream's actor: a lock for tasks that always give it back.

:class:`trio.Lock` records its owner on every acquire and release (the current task,
checked on release, and a parking-lot breaker that fails the waiters should the owner
exit without releasing). An actor takes its turn twice per event (the emitting task
and the delivering task each take it), and that bookkeeping cost more than the rest of
taking it. Every holder here releases in a ``finally`` in the same task, so the
owner checks can never fire, and this lock keeps only what the actor relies on:
acquire as :class:`trio.Lock` does (a checkpoint either way), and a release that hands
the turn at once to the longest waiter, so nobody who asks later can overtake it.
"""

from __future__ import annotations

import trio
import trio.lowlevel


class Turn:
    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self._held

    def acquire_nowait(self) -> None:
        if self._held:
            raise trio.WouldBlock
        self._held = True

    async def acquire(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._held:
            await self._waiters.park()  # woken holding it (see ``release``)
        else:
            self._held = True
            await trio.lowlevel.cancel_shielded_checkpoint()

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("the turn is not held")
        if self._waiters:  # (``unpark`` costs much even with nobody parked)
            self._waiters.unpark(count=1)  # handed over: it stays held, by the waiter
        else:
            self._held = False
