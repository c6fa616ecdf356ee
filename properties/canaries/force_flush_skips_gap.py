"""Canary ``force-flush-skips-gap``: LibreChat's 500 ms force-flush.

The bug (LibreChat's reorder buffer, never removed): a gap that does not fill within
the reorder timeout is skipped silently. Every parked message is delivered, holes and
all, instead of the missing seqs being read from the chunk log, and no Gap event says
so. Other canaries use the same buffer for the attachments LibreChat did not
synchronise (see ``_readers.py``).
"""

from __future__ import annotations

from streamcheck.impl.seams import Attach, ReorderBuffer, Step
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._readers import ChoosesReorderBuffers


class SkipsGaps(ReorderBuffer):
    """A reorder buffer whose gap timeout delivers what is parked, holes and all."""

    def _gap_timed_out(self, step: Step) -> None:
        for seq in sorted(self._pending):
            if self.finished:
                break
            self.next_seq = seq
            self._accept_in_order(self._pending.pop(seq), step)
        self._pending.clear()
        self._first_parked_at = None


class ForceFlushes(ChoosesReorderBuffers):
    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        return (*super()._buffer_mixins(command), SkipsGaps)


BUG = Bug(actor=(ForceFlushes,))
