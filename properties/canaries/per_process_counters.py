"""Canary ``per-process-counters``: LibreChat's seqs counted per process.

The bug (LibreChat before #12578; docs/librechat.md, bug 8): each replica numbered a
stream's events with its own counter (from 0), so an abort's final event published
from another replica reused a seq. Such a replica has no shared counter to repair
after Redis lost writes, so it never checks for lost writes either.
"""

from __future__ import annotations

import dataclasses

from streamcheck.impl.seams import Emit, LostWrites, PublishOutcome
from streamcheck.impl.transport import Published
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._publish import (
    PublishesLikeLibreChat,
    PublishesWithOptions,
    PublishOptions,
)


class CountsPerProcess(PublishesWithOptions):
    #: This actor's own next seq for the stream (a new actor starts again at 0).
    _local_counter = 0

    def _publish_options(self) -> PublishOptions:
        return dataclasses.replace(super()._publish_options(), pinned_seq=self._local_counter)

    async def _publish_on_bus(self, command: Emit) -> PublishOutcome:
        outcome = await super()._publish_on_bus(command)
        if isinstance(outcome, Published):
            self._local_counter += 1
        return outcome

    async def _mark_lost(self) -> LostWrites | None:
        return None


BUG = Bug(actor=(CountsPerProcess,), redis_bus=(PublishesLikeLibreChat,))
