"""Canary ``forged-generation-supersedes``: a channel message of another generation
ends readers as "superseded".

The bug (this implementation before issue 17): a reader took a live message whose
generation differed from its turn's as proof that a newer turn had replaced it, and
ended with "generation superseded by a newer turn on this stream". Anyone who can
PUBLISH on the Redis (a misconfigured service, a stale replica, a test tool) could end
every reader of a stream with one message. The fix treats such a message as a hint:
the reader reads the chunk log, and only a newer generation the log holds ends it.
"""

from __future__ import annotations

from streamcheck.impl.seams import Attach, ReorderBuffer, SequencedEvent, Step
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._readers import ChoosesReorderBuffers


class TrustsForeignGenerations(ReorderBuffer):
    """A reorder buffer that parks another generation's live message in its slot, so
    that reaching it ends the reader as superseded (the old rule 2)."""

    def offer(self, event: SequencedEvent, now: float) -> Step:
        if (
            event.generation == self.generation
            or self.finished
            or event.seq < self.next_seq
            or event.seq in self._pending
        ):
            return super().offer(event, now)
        self._pending[event.seq] = event
        if self._first_parked_at is None:
            self._first_parked_at = now
        step = Step()
        self._drain(step)
        return self._finish(step, now)


class BelievesTheChannel(ChoosesReorderBuffers):
    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        return (*super()._buffer_mixins(command), TrustsForeignGenerations)


BUG = Bug(actor=(BelievesTheChannel,))
