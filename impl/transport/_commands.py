"""What callers ask of a stream's actor, and how the actor answers.

Every request to a :class:`~streamcheck.impl.transport._actor.StreamActor` is one of
the command records below, queued on its inbox. A request that wants an answer carries
a :class:`Reply`, which the actor sets (or fails) once it has handled the command. The
records are plain data: the actor decides what each one means.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import trio
import trio.lowlevel

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._errors import StreamActorStopped
from streamcheck.impl._reorder import Step
from streamcheck.impl.transport._bus import EventKind, PublishOutcome
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.model import JSONValue, StreamEvent

T = TypeVar("T")

AbortCallback = Callable[[], None]


class Reply(Generic[T]):
    """A one-shot answer from the actor to a caller, who may wait for it."""

    __slots__ = ("_answered", "_error", "_value", "_waiter")

    def __init__(self) -> None:
        self._answered = False
        #: Made only when someone waits before the answer: most replies are read after.
        self._waiter: trio.Event | None = None
        self._value: T | None = None
        self._error: BaseException | None = None

    def set(self, value: T) -> None:
        self._value = value
        self._answer()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._answer()

    def _answer(self) -> None:
        self._answered = True
        if self._waiter is not None:
            self._waiter.set()

    async def wait(self) -> T:
        if self._answered:
            await trio.lowlevel.checkpoint()
        else:
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()
        return self.result()

    @property
    def answered(self) -> bool:
        return self._answered

    def result(self) -> T:
        """The answer, once it has been given."""
        if not self._answered:
            raise RuntimeError("the actor has not answered yet")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class AcknowledgementListener(Protocol):
    def acknowledged(self, acknowledgement: Acknowledgement) -> None:
        """The actor answered ``acknowledgement`` (published, refused or failed)."""


class Acknowledgement(Reply[PublishOutcome]):
    """The answer to a queued emit (``StreamActor.submit``), which its caller may await
    later, or never: its listener hears of the answer at once, awaited or not."""

    __slots__ = ("_listener",)

    def __init__(self, listener: AcknowledgementListener | None = None) -> None:
        super().__init__()
        self._listener = listener

    @property
    def outcome(self) -> PublishOutcome | None:
        """The answer once given; ``None`` if the publish failed (``result`` raises)."""
        return None if self._error is not None else self._value

    def _answer(self) -> None:
        super()._answer()
        # Heard once, then let go: a listener usually holds its acknowledgement, and
        # the pair, left a cycle, would wait for the garbage collector (one per event).
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.acknowledged(self)

    def __await__(self) -> Generator[Any, None, PublishOutcome]:
        return self.wait().__await__()


def refuse(command: object, stream_id: str) -> None:
    """Answer a request the stopped actor will never run (commands without a reply
    need no answer)."""
    reply = getattr(command, "reply", None)
    if isinstance(reply, Reply) and not reply.answered:
        reply.fail(StreamActorStopped(stream_id))


# Not frozen: one is made per event, and a frozen dataclass's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of plain assignments.
# Nothing changes an Emit once made.
@dataclass(slots=True)
class Emit:
    generation: str
    kind: EventKind
    body: JSONValue
    #: ``body`` as JSON (encoded once, by the transport, which checked its size).
    encoded: str
    reply: Reply[PublishOutcome]
    #: The terminal of an abort (the only event a turn an abort claimed accepts).
    by_abort: bool = False
    #: Queued by ``submit`` (not awaited): holds one of the actor's in-flight places.
    submitted: bool = False


@dataclass(frozen=True, slots=True)
class Flush:
    """Publish the emits queued since (see ``StreamActor.submit``), in order."""


@dataclass(frozen=True, slots=True)
class Attach:
    sub_id: int
    generation: str
    start_seq: int
    out: trio.MemorySendChannel[StreamEvent]
    job_ended: bool
    reply: Reply[None]
    resume: bool = False


@dataclass(frozen=True, slots=True)
class Detach:
    sub_id: int
    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Incoming:
    message: SequencedEvent | AbortSignal


@dataclass(frozen=True, slots=True)
class Continue:
    """The I/O a subscriber's step asked for, its deliveries already made (see
    ``StreamActor.incoming``)."""

    sub_id: int
    step: Step


@dataclass(frozen=True, slots=True)
class Rearm:
    """A timer was set earlier than the one the actor waits for: look again."""


@dataclass(frozen=True, slots=True)
class Restored:
    """The bus reconnected: Redis may have lost writes meanwhile."""


@dataclass(frozen=True, slots=True)
class Audit:
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Produce:
    generation: str
    early: EarlyBuffer


@dataclass(frozen=True, slots=True)
class StopProducing:
    generation: str


@dataclass(frozen=True, slots=True)
class OnAbort:
    generation: str
    callback: AbortCallback | None


Command = (
    Emit
    | Flush
    | Attach
    | Detach
    | Incoming
    | Continue
    | Rearm
    | Restored
    | Audit
    | Produce
    | StopProducing
    | OnAbort
)
