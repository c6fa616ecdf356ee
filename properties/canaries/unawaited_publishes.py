"""Canary ``unawaited-publishes``: LibreChat's emits that did not await their publish.

The bug (LibreChat before #11650; docs/librechat.md, bug 1): ``emit_chunk`` (and the
terminals) started the publish and returned without awaiting it, so a generator's
consecutive events raced to Redis on separate connections. Each seq is allocated
when its script runs, so every reader sees one order, Redis's, which need not be the
generator's.

An emit returns a :class:`Dispatched` receipt: the world records it as an emit of
unknown outcome (it may or may not have been published).
"""

from __future__ import annotations

import dataclasses

import trio

from streamcheck.impl import AbortResult, GenerationJobManager
from streamcheck.impl.seams import Emit, PublishOutcome, Reply, StreamActor
from streamcheck.impl.transport import EventKind, Published
from streamcheck.model import JSONValue
from streamcheck.properties.canaries._build import Bug

#: What a dispatched publish says its seq is: nobody knows it yet.
UNKNOWN_SEQ = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Dispatched(Published):
    """The publish was started, not awaited: neither its seq nor whether the fence let
    it through is known (``seq`` is :data:`UNKNOWN_SEQ`)."""


class DispatchesPublishes(StreamActor):
    _publishes: trio.Nursery

    async def emit(
        self,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        encoded: str,
        *,
        by_abort: bool = False,
    ) -> PublishOutcome:
        # Always through the actor's inbox: the actor starts the publish and answers.
        reply: Reply[PublishOutcome] = Reply()
        self._tell(Emit(generation, kind, body, encoded, reply, by_abort))
        return await reply.wait()

    async def _loop(self) -> None:
        async with trio.open_nursery() as publishes:
            self._publishes = publishes
            await super()._loop()

    async def _publish(self, command: Emit) -> None:
        # The caller goes on at once; this publish races the next ones.
        command.reply.set(Dispatched(seq=UNKNOWN_SEQ))
        self._publishes.start_soon(super()._publish, dataclasses.replace(command, reply=Reply()))


class AbortsWithoutSeq(GenerationJobManager):
    async def abort_job(self, stream_id: str, user_id: str) -> AbortResult:
        result = await super().abort_job(stream_id, user_id)
        if result.terminal_seq == UNKNOWN_SEQ:  # the abort's final event was dispatched
            return dataclasses.replace(result, terminal_seq=None)
        return result


BUG = Bug(manager=(AbortsWithoutSeq,), actor=(DispatchesPublishes,))
