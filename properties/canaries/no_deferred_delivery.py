"""Canary ``no-deferred-delivery``: LibreChat's attachment live before its replay.

The bug (LibreChat before ``deliveryDeferred``; docs/librechat.md, bug 11): a fresh
attachment was live at once, and waited for a Redis round trip (here the counter GET,
standing for LibreChat's wait on its early publishes) before the producer's early
buffer was replayed, straight to the client as LibreChat's ``onChunk`` replay was.
Pub/sub copies of early events that land in that wait reach the client first, so
they arrive twice. Resumes clear the buffer unreplayed (#12225), as then.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, cast

import trio

from streamcheck.impl.seams import (
    Attach,
    Command,
    LocalSubscriber,
    ReorderBuffer,
    Reply,
    SequencedEvent,
    Step,
    StreamActor,
)
from streamcheck.impl.transport import EventTransport, RedisBus
from streamcheck.model import Chunk
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._readers import ChoosesReorderBuffers


class LiveAtOnce(ReorderBuffer):
    """Not deferred: live traffic is delivered from the first seq on, before any
    catch-up."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._deferred = False

    def replayed(self, last_seq: int, now: float) -> Step:
        """Seqs up to ``last_seq`` reached the reader outside this buffer (LibreChat's
        raw replay of its early buffer): move the frontier past them, as LibreChat's
        sync did, whatever was delivered already."""
        step = Step()
        if not self.finished and last_seq >= self.next_seq:
            self.next_seq = last_seq + 1
            self._drop_below_frontier()
            self._drain(step)
        return self._finish(step, now)


@dataclass(frozen=True, slots=True)
class _ReplayEarly:
    sub_id: int
    #: A resume: LibreChat (``skipBufferReplay``, #12225) cleared the buffer unreplayed.
    resume: bool
    reply: Reply[None]


class ReplaysAfterGoingLive(ChoosesReorderBuffers):
    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        return (*super()._buffer_mixins(command), LiveAtOnce)

    async def _catch_up(self, sub: LocalSubscriber, command: Attach, now: float) -> None:
        pass  # live now: ``replay_early`` does the rest

    async def replay_early(self, sub_id: int, *, resume: bool) -> None:
        """Replay the early buffer to an attachment that is already live (unless it
        resumes), then catch it up from the log."""
        reply: Reply[None] = Reply()
        # A command of this canary's own, handled by ``_handle`` below.
        self._tell(cast("Command", _ReplayEarly(sub_id, resume, reply)))
        await reply.wait()

    async def _handle(self, command: Command) -> None:
        if isinstance(command, _ReplayEarly):
            await self._replay_early(command, trio.current_time())
        else:
            await super()._handle(command)

    async def _replay_early(self, command: _ReplayEarly, now: float) -> None:
        # The early buffer's chunks go straight to the reader (``onChunk``), not through
        # its reorder buffer, so copies that arrived live meanwhile are not recognised.
        command.reply.set(None)
        sub = self._subscribers.get(command.sub_id)
        if sub is None:
            return
        producer = self._producer
        replayed: list[SequencedEvent] = []
        if (
            producer is not None
            and producer.generation == sub.buffer.generation
            and not producer.early.closed
        ):
            for event in producer.early.take():
                if command.resume or not isinstance(event, Chunk):
                    break  # LibreChat buffered chunks only; terminals come live
                replayed.append(event)
        try:
            for event in replayed:
                sub.out.send_nowait(event)
        except trio.BrokenResourceError:
            self._remove(sub.sub_id)
            return
        if replayed:
            assert isinstance(sub.buffer, LiveAtOnce)
            await self._apply(sub, sub.buffer.replayed(replayed[-1].seq, now))
        if command.sub_id in self._subscribers and not sub.buffer.finished:
            await self._apply(sub, sub.buffer.begin(now))


class ReadsCounter(RedisBus):
    async def counter(self, stream_id: str) -> int:
        """The next seq the stream will allocate (0 for a new stream)."""
        raw = await self._redis.get(self._keys.seq(stream_id))
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0


class SettlesThenReplays(EventTransport):
    async def _attach_reader(
        self, actor: StreamActor, sub_id: int, *, resume: bool, **attachment: Any
    ) -> None:
        await super()._attach_reader(actor, sub_id, resume=resume, **attachment)
        assert isinstance(actor, ReplaysAfterGoingLive) and isinstance(self._bus, ReadsCounter)
        # LibreChat's attachment, already live, awaited its early publishes and the
        # frontier GET before replaying its early buffer; pub/sub copies that land
        # meanwhile reach the reader first.
        try:
            with contextlib.suppress(ConnectionError, OSError):
                await self._bus.counter(actor.stream_id)  # the round trip is the window
            await actor.replay_early(sub_id, resume=resume)
        except BaseException:
            with trio.CancelScope(shield=True):
                await actor.detach(sub_id)
            raise


BUG = Bug(
    transport=(SettlesThenReplays,),
    actor=(ReplaysAfterGoingLive,),
    redis_bus=(ReadsCounter,),
)
