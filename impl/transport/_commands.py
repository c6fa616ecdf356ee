"""What callers ask of a stream's actor, and how the actor answers.

Every request to a :class:`~streamcheck.impl.transport._actor.StreamActor` is one of
the command records below, queued on its inbox. A request that wants an answer carries
a :class:`Reply`, which the actor sets (or fails) once it has handled the command. The
records are plain data: the actor decides what each one means.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._errors import StreamActorStopped
from streamcheck.impl._reorder import Step
from streamcheck.impl.transport._bus import EventKind, PublishOutcome
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.model import JSONValue, StreamEvent

T = TypeVar("T")

AbortCallback = Callable[[], None]


class Reply(Generic[T]):
    """A one-shot answer from the actor to a waiting caller."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set(self, value: T) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    async def wait(self) -> T:
        await self._done.wait()
        return self.result()

    @property
    def answered(self) -> bool:
        return self._done.is_set()

    def result(self) -> T:
        """The answer, once it has been given."""
        if not self._done.is_set():
            raise RuntimeError("the actor has not answered yet")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Acknowledgement(Reply[PublishOutcome]):
    """The answer to a queued emit (``StreamActor.submit``), which its caller may await
    later, or never: the listeners run when the actor answers, awaited or not."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[Acknowledgement], None]] = []

    def add_listener(self, listener: Callable[[Acknowledgement], None]) -> None:
        """Run ``listener`` once answered (at once if answered already)."""
        if self.answered:
            listener(self)
        else:
            self._listeners.append(listener)

    @property
    def outcome(self) -> PublishOutcome | None:
        """The answer once given; ``None`` if the publish failed (``result`` raises)."""
        return None if self._error is not None else self._value

    def set(self, value: PublishOutcome) -> None:
        super().set(value)
        self._notify()

    def fail(self, error: BaseException) -> None:
        super().fail(error)
        self._notify()

    def _notify(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener(self)

    def __await__(self) -> Generator[Any, None, PublishOutcome]:
        return self.wait().__await__()


def refuse(command: object, stream_id: str) -> None:
    """Answer a request the stopped actor will never run (commands without a reply
    need no answer)."""
    reply = getattr(command, "reply", None)
    if isinstance(reply, Reply) and not reply.answered:
        reply.fail(StreamActorStopped(stream_id))


@dataclass(frozen=True, slots=True)
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
