"""Canary ``early-buffer-on-resume``: LibreChat's early buffer replayed on a resume.

The bug (LibreChat before #12225; docs/librechat.md, bug 6): after a disconnect the
producer buffered again, and a resume on its replica replayed that buffer, raw, on
top of the snapshot that already held those events: the reader got them twice.
"""

from __future__ import annotations

from streamcheck.impl.seams import (
    Attach,
    Command,
    Detach,
    EarlyBuffer,
    LocalSubscriber,
    StreamActor,
)
from streamcheck.properties.canaries._build import Bug


class ReplaysOnResume(StreamActor):
    async def _handle(self, command: Command) -> None:
        await super()._handle(command)
        if isinstance(command, Detach) and not self._subscribers and self._producer:
            _reopen(self._producer.early)  # the last reader left: buffer again

    async def _catch_up(self, sub: LocalSubscriber, command: Attach, now: float) -> None:
        producer = self._producer
        if command.resume and producer is not None and producer.generation == command.generation:
            # Straight to the reader, not through its reorder buffer: nothing recognises
            # what the snapshot already holds.
            for event in producer.early.take():
                command.out.send_nowait(event)
        await super()._catch_up(sub, command, now)


def _reopen(early: EarlyBuffer) -> None:
    early.events = []
    early.size_bytes = 0
    early.overflowed = False
    early.closed = False


BUG = Bug(actor=(ReplaysOnResume,))
