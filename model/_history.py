"""A history: what happened in one run, as the checker needs it.

Every record carries ``index`` (its position, assigned by :class:`History`) and
``time`` (simulated or wall seconds). Producers of histories (the simulation, the
real-Redis tier) append records as things happen; the checker judges the whole list.

Vocabulary:

* a **generation** is one turn on a stream id (``stream_id`` + ``generation``);
* a **session** is one subscriber attachment (``subscribe`` or ``resume``) by one user
  on one replica; it ends with its terminal, a detach, or its replica's crash.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace

from streamcheck.model._events import JSONValue, StreamEvent


def digest(value: JSONValue) -> str:
    """Stable short digest of a payload (content comparisons without storing it)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class EmitKind(enum.StrEnum):
    CHUNK = "chunk"
    DONE = "done"
    ERROR = "error"


class OpOutcome(enum.StrEnum):
    """Jepsen's three answers: it happened, it did not, or we cannot know."""

    OK = "ok"
    FAIL = "fail"
    INDETERMINATE = "indeterminate"


class SessionMode(enum.StrEnum):
    SUBSCRIBE = "subscribe"
    RESUME = "resume"


class SessionEnd(enum.StrEnum):
    TERMINAL = "terminal"  # the session delivered its terminal and closed
    DETACHED = "detached"  # the client left on purpose
    REPLICA_CRASHED = "replica_crashed"  # the serving replica died
    CLOSED = "closed"  # the stream ended without a terminal (channel closed)
    #: The serving replica's actor for the stream failed: the session got the typed
    #: failure that tells its client to resume elsewhere. Like a crash of the serving
    #: replica, it claims neither completeness nor liveness for the session.
    STREAM_FAILED = "stream_failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationStarted:
    index: int = -1
    time: float
    stream_id: str
    generation: str
    user_id: str
    replica: str
    start_seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Emitted:
    """The generator's emit returned. ``seq`` is known only when ``outcome`` is OK."""

    index: int = -1
    time: float
    stream_id: str
    generation: str
    replica: str
    kind: EmitKind
    payload_digest: str
    outcome: OpOutcome
    seq: int | None = None
    #: The terminal an abort published for the turn (not the generator's own end).
    by_abort: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class AbortRequested:
    """An abort returned on ``replica``; ``acknowledged`` when it reported ABORTED."""

    index: int = -1
    time: float
    stream_id: str
    generation: str | None
    replica: str
    user_id: str
    acknowledged: bool
    outcome: OpOutcome


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratorStopped:
    """The generator observed its stop signal and stopped emitting."""

    index: int = -1
    time: float
    stream_id: str
    generation: str
    #: An abort stopped it (not the turn ending some other way, e.g. judged lost).
    by_abort: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionOpened:
    """``first_seq`` is the first seq the session is owed (start or snapshot + 1)."""

    index: int = -1
    time: float
    session: str
    stream_id: str
    generation: str
    user_id: str
    owner_id: str
    replica: str
    mode: SessionMode
    first_seq: int
    #: For resumes: digests of the chunks folded into the snapshot, in seq order.
    snapshot_seqs: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivered:
    index: int = -1
    time: float
    session: str
    event: StreamEvent
    #: Digest of the chunk data / done data / error message (None for gaps).
    payload_digest: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionClosed:
    index: int = -1
    time: float
    session: str
    reason: SessionEnd


@dataclass(frozen=True, kw_only=True, slots=True)
class BoundExceeded:
    """A replica held more of a bounded resource than its limit (e.g. an early buffer
    past its event cap): the memory-growth bugs that no delivery anomaly shows."""

    index: int = -1
    time: float
    replica: str
    stream_id: str
    resource: str
    value: int
    limit: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WritesLost:
    """Redis lost ``writes`` acknowledged writes (a failover promoted a replica that
    lacked them). Across such a record a generation may end twice or emit past its
    terminal, because the write that ended it is gone; readers still may not see it."""

    index: int = -1
    time: float
    writes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Healed:
    """Faults stopped and every timeout passed: from here on, liveness is judged."""

    index: int = -1
    time: float


Record = (
    GenerationStarted
    | Emitted
    | AbortRequested
    | GeneratorStopped
    | SessionOpened
    | Delivered
    | SessionClosed
    | BoundExceeded
    | WritesLost
    | Healed
)


@dataclass(slots=True)
class History:
    records: list[Record] = field(default_factory=list)

    def append(self, record: Record) -> Record:
        indexed = replace(record, index=len(self.records))
        self.records.append(indexed)
        return indexed

    def __len__(self) -> int:
        return len(self.records)
