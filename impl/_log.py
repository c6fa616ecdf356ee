"""What the chunk log holds: the stream's sequenced events, and markers of lost writes."""

from __future__ import annotations

from dataclasses import dataclass

from streamcheck.model import Chunk, Done, Failure

SequencedEvent = Chunk | Done | Failure


@dataclass(frozen=True, slots=True)
class LostWrites:
    """A log row saying seqs ``first_seq..last_seq`` were allocated and then lost by
    Redis (restart or failover). A replica that had seen them pushed the counter back
    past them and wrote this row, so that readers signal a gap instead of silence."""

    first_seq: int
    last_seq: int
    #: Seqs from here on were skipped only because the server changed (see
    #: ``GapReason.POSSIBLY_LOST``); below it a replica had seen them. ``None``: all seen.
    possibly_from: int | None = None

    @property
    def seq(self) -> int:
        """The row's place in the log (its last lost seq)."""
        return self.last_seq


LogRow = Chunk | Done | Failure | LostWrites
