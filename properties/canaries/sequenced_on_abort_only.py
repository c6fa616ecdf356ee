"""Canary ``sequenced-on-abort-only``: LibreChat's reorder state on a readerless replica.

The bug (LibreChat before #14557; docs/librechat.md, bug 12): a replica holding a
stream's channel for the generator's abort listener only (no reader there) still ran
the sequenced traffic through a reorder state whose frontier went back to 0 when its
last reader left: every later event parked, waiting for seqs long gone, until the cap
(100, LibreChat's) skipped them all ("skipping 16,119 missing messages"). Nothing
reaches a reader; the world's resource bound "events parked with no reader" reports it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from streamcheck.impl.seams import (
    AbortSignal,
    ActorStats,
    Attach,
    Command,
    Incoming,
    SequencedEvent,
    StreamActor,
)
from streamcheck.properties.canaries._build import Bug, ResourceBound

#: LibreChat's reorder buffer cap.
READERLESS_CAP = 100


@dataclass(slots=True)
class _ReaderlessOrder:
    """LibreChat's reorder state for a stream with no reader: it orders events for nobody."""

    frontier: int = 0
    parked: set[int] = dataclasses.field(default_factory=set)

    def offer(self, seq: int) -> None:
        if seq > self.frontier:
            self.parked.add(seq)
            if len(self.parked) > READERLESS_CAP:
                self.frontier = max(self.parked) + 1  # "skipping N missing messages"
                self.parked.clear()
            return
        if seq == self.frontier:
            self.frontier += 1
            while self.frontier in self.parked:
                self.parked.discard(self.frontier)
                self.frontier += 1

    def reset(self) -> None:
        self.frontier = 0
        self.parked.clear()


@dataclass(frozen=True, slots=True)
class ParkedStats(ActorStats):
    #: Events parked while no reader is attached here.
    parked_without_reader: int = 0


class OrdersWithoutReaders(StreamActor):
    @functools.cached_property
    def _readerless(self) -> _ReaderlessOrder:
        return _ReaderlessOrder()

    def incoming(self, message: SequencedEvent | AbortSignal) -> None:
        self._tell(Incoming(message))  # every event goes through the actor's inbox

    async def _handle(self, command: Command) -> None:
        if (
            isinstance(command, Incoming)
            and not isinstance(command.message, AbortSignal)
            and not self._subscribers
        ):
            self._readerless.offer(command.message.seq)
        await super()._handle(command)

    async def _attach(self, command: Attach, now: float) -> None:
        self._readerless.parked.clear()  # a reader's attachment synchronises it
        await super()._attach(command, now)

    def _remove(self, sub_id: int) -> None:
        leaving = sub_id in self._subscribers
        super()._remove(sub_id)
        if leaving and not self._subscribers:
            self._readerless.reset()  # the frontier goes back to 0

    def statistics(self) -> ActorStats:
        stats = super().statistics()
        fields = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
        return ParkedStats(**fields, parked_without_reader=len(self._readerless.parked))


def _parked(stats: ActorStats) -> int:
    return stats.parked_without_reader if isinstance(stats, ParkedStats) else 0


BUG = Bug(
    actor=(OrdersWithoutReaders,),
    bounds=(ResourceBound("events parked with no reader", _parked, 0),),
)
