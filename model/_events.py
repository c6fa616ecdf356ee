"""Events as a subscriber receives them.

Every sequenced event carries the stream-wide ``seq`` (monotonic across the turns of
one stream id) and the ``generation`` it belongs to, so a history can be judged
without knowing anything about the transport that carried it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard

JSONValue: TypeAlias = dict[str, "JSONValue"] | list["JSONValue"] | str | int | float | bool | None


def _check_seq(seq: int, what: str) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seq!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Chunk:
    """One piece of the answer (an SSE event object such as ``on_message_delta``)."""

    seq: int
    generation: str
    data: JSONValue

    def __post_init__(self) -> None:
        _check_seq(self.seq, "Chunk.seq")


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    """The generation finished (normally or by abort); ``data`` is its final event."""

    seq: int
    generation: str
    data: JSONValue

    def __post_init__(self) -> None:
        _check_seq(self.seq, "Done.seq")


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """The generation ended with an error; ``message`` is what the client is shown."""

    seq: int
    generation: str
    message: str

    def __post_init__(self) -> None:
        _check_seq(self.seq, "Failure.seq")


class GapReason(enum.Enum):
    """Why a range of events can never be delivered."""

    #: Pub/sub dropped the messages and the chunk log no longer holds them.
    NOT_IN_LOG = "not_in_log"
    #: Redis lost acknowledged writes (restart or failover) and the counter went back.
    WRITES_LOST = "writes_lost"
    #: Redis restarted, failed over or moved the stream, and nobody alive saw what it
    #: may have handed out just before: these seqs were skipped to be safe. They may
    #: never have existed (a lossless move), so a reader may treat this as a warning.
    POSSIBLY_LOST = "possibly_lost"
    #: The producing replica died; nothing more will come for this generation.
    PRODUCER_LOST = "producer_lost"


@dataclass(frozen=True, kw_only=True, slots=True)
class Gap:
    """Events ``first_seq..last_seq`` (inclusive) are lost for good: an explicit hole."""

    first_seq: int
    last_seq: int
    generation: str
    reason: GapReason

    def __post_init__(self) -> None:
        _check_seq(self.first_seq, "Gap.first_seq")
        _check_seq(self.last_seq, "Gap.last_seq")
        if self.last_seq < self.first_seq:
            raise ValueError(
                f"Gap.last_seq ({self.last_seq}) must be >= first_seq ({self.first_seq})"
            )


Terminal: TypeAlias = Done | Failure
#: What the chunk log and the channel carry: events with a seq of their own.
SequencedEvent: TypeAlias = Chunk | Done | Failure
StreamEvent: TypeAlias = Chunk | Done | Failure | Gap


#: A tuple, not ``Done | Failure``: that builds a union on every call (every event).
_TERMINAL_TYPES = (Done, Failure)


def is_terminal(event: StreamEvent) -> TypeGuard[Terminal]:
    return isinstance(event, _TERMINAL_TYPES)
