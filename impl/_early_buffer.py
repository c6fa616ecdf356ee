"""The producer's early buffer (sans-IO).

While the generating replica has never had a local subscriber it keeps what it
published, so the first local attachment replays it without a log read. It is bounded
(docs/librechat.md, bug 13: an unbounded buffer grew a 2 GiB heap); on overflow it discards itself
and that attachment catches up from the chunk log instead. After the first attachment
it closes for good: later attachments always use the log, so nothing is replayed
twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamcheck.model import SequencedEvent

#: Caps from LibreChat #14612 (docs/design.md).
MAX_EVENTS = 5_000
MAX_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class EarlyBuffer:
    max_events: int = MAX_EVENTS
    max_bytes: int = MAX_BYTES
    events: list[SequencedEvent] = field(default_factory=list)
    size_bytes: int = 0
    overflowed: bool = False
    closed: bool = False

    @property
    def accepting(self) -> bool:
        """Whether ``record`` keeps what it is given (callers may skip building it)."""
        return not (self.closed or self.overflowed)

    def record(self, event: SequencedEvent, size_bytes: int) -> None:
        if self.closed or self.overflowed:
            return
        over = len(self.events) + 1 > self.max_events or (
            self.size_bytes + size_bytes > self.max_bytes
        )
        if over:
            self.overflowed = True
            self.events = []
            self.size_bytes = 0
            return
        self.events.append(event)
        self.size_bytes += size_bytes

    def take(self) -> list[SequencedEvent]:
        """Hand the buffer to the first attachment and close; empty if it overflowed."""
        events = [] if self.overflowed else self.events
        self.events = []
        self.size_bytes = 0
        self.closed = True
        return events
