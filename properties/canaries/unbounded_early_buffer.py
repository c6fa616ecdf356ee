"""Canary ``unbounded-early-buffer``: LibreChat's early buffer before its caps.

The bug (LibreChat before #14612; docs/librechat.md, bug 13): the producer's early
buffer had no caps and kept buffering after attachments, so a long detached run grew
without bound (a 2 GiB heap in production). Nothing wrong reaches a reader; the
world's resource bound "early buffer (events)" reports it.
"""

from __future__ import annotations

from streamcheck.impl import GenerationJobManager
from streamcheck.impl.seams import EarlyBuffer
from streamcheck.model import SequencedEvent
from streamcheck.properties.canaries._build import Bug


class UnboundedEarlyBuffer(EarlyBuffer):
    """No caps, and a take leaves it open: it buffers for ever."""

    def record(self, event: SequencedEvent, size_bytes: int) -> None:
        if not self.closed:
            self.events.append(event)
            self.size_bytes += size_bytes

    def take(self) -> list[SequencedEvent]:
        events = self.events
        self.events = []
        self.size_bytes = 0
        return events


class UnboundedManager(GenerationJobManager):
    def _early_buffer(self) -> EarlyBuffer:
        bounded = super()._early_buffer()
        return UnboundedEarlyBuffer(max_events=bounded.max_events, max_bytes=bounded.max_bytes)


BUG = Bug(manager=(UnboundedManager,))
