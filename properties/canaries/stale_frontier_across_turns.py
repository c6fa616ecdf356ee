"""Canary ``stale-frontier-across-turns``: LibreChat's frontier kept into the next turn.

The bug (LibreChat before #13117; docs/librechat.md, bug 9): a replica kept a stream's
frontier after its last reader left (the state kept since #11842) and started the
next turn's first attachment there. The frontier is stale only once the counter went
back, so this canary also deletes the counter on cleanup (the mechanism of
``counter-deleted-on-cleanup``, which the bug needed in production too): the next turn
restarts below the old frontier, and its events are dropped as already seen. The
reused seq this causes is what a campaign reports first;
tests/test_canary_interleavings.py pins what the stale frontier adds.
"""

from __future__ import annotations

import functools
from typing import Any

from streamcheck.impl.seams import StreamActor
from streamcheck.impl.transport import EventTransport
from streamcheck.properties.canaries import counter_deleted_on_cleanup
from streamcheck.properties.canaries._build import Bug


class RemembersLastFrontier(StreamActor):
    #: The turn the last reader here read, and the frontier it left at.
    last_reader_left: tuple[str, int] | None = None

    def _remove(self, sub_id: int) -> None:
        sub = self._subscribers.get(sub_id)
        super()._remove(sub_id)
        if sub is not None and not self._subscribers:
            # The reorder frontier (the last seq handed to the reader), as LibreChat's
            # kept state held it; not the publish floor, which moves only on seqs the
            # log or this replica's own publishes confirm.
            self.last_reader_left = (sub.buffer.generation, sub.buffer.next_seq - 1)


class StartsAtStaleFrontier(EventTransport):
    @functools.cached_property
    def _frontier_left(self) -> dict[str, tuple[str, int]]:
        """Per stream, the turn and the frontier its last reader here left at (kept,
        like LibreChat's state, past cleanup)."""
        return {}

    async def _attach_reader(
        self,
        actor: StreamActor,
        sub_id: int,
        *,
        generation: str,
        start_seq: int,
        resume: bool,
        **attachment: Any,
    ) -> None:
        attach_from = start_seq
        if not resume:
            # The next turn starts where the last reader of the previous one left.
            assert isinstance(actor, RemembersLastFrontier)
            left = actor.last_reader_left or self._frontier_left.get(actor.stream_id)
            if left is not None and left[0] != generation and left[1] >= start_seq:
                attach_from = left[1] + 1
        await super()._attach_reader(
            actor, sub_id, generation=generation, start_seq=attach_from, resume=resume, **attachment
        )

    def cleanup(self, stream_id: str) -> None:
        entry = self._actors.get(stream_id)
        if entry is not None:
            actor = entry[0]
            assert isinstance(actor, RemembersLastFrontier)
            if actor.last_reader_left is not None:
                self._frontier_left[stream_id] = actor.last_reader_left
        super().cleanup(stream_id)


_deleted = counter_deleted_on_cleanup.BUG
BUG = Bug(
    manager=_deleted.manager,
    transport=(StartsAtStaleFrontier,),
    actor=(RemembersLastFrontier, *_deleted.actor),
    redis_bus=_deleted.redis_bus,
)
