"""A replica with bugs put back: impl's parts, subclassed by the chosen canaries.

Each canary module names the subclasses that restore its bug (:class:`Bug`). They are
cooperative mixins over impl's production classes: each overrides a template method
and defers to ``super()`` wherever its bug does not apply, so any set of canaries
composes into one class per part (:func:`assemble`), in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar, cast

from streamcheck.impl import GenerationJobManager, ReplicaParts
from streamcheck.impl.seams import ActorStats, StreamActor
from streamcheck.impl.transport import EventTransport, RedisBus

T = TypeVar("T")


class ResourceBound(NamedTuple):
    """A per-stream resource the world samples after every decision (its
    ``sample_bounds``): past ``limit``, the history records a ``BoundExceeded``."""

    resource: str
    reading: Callable[[ActorStats], int]
    limit: int


@dataclass(frozen=True, slots=True)
class Bug:
    """What restores one bug: mixins per part of a replica, and what the world must
    sample to see it (a bug that delivers nothing wrong shows as a resource bound)."""

    manager: tuple[type[GenerationJobManager], ...] = ()
    transport: tuple[type[EventTransport], ...] = ()
    actor: tuple[type[StreamActor], ...] = ()
    redis_bus: tuple[type[RedisBus], ...] = ()
    bounds: tuple[ResourceBound, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaBuild:
    """The parts every replica of a world is built from, and the extra bounds."""

    parts: ReplicaParts = field(default_factory=ReplicaParts)
    bounds: tuple[ResourceBound, ...] = ()


#: impl's own parts: the correct implementation.
CORRECT = ReplicaBuild()


def assemble(bugs: Iterable[Bug]) -> ReplicaBuild:
    """One class per part, with the mixins of ``bugs`` in order (outermost first)."""
    chosen = list(bugs)
    if not chosen:
        return CORRECT
    return ReplicaBuild(
        ReplicaParts(
            manager=subclass(GenerationJobManager, _mixins(b.manager for b in chosen)),
            transport=subclass(EventTransport, _mixins(b.transport for b in chosen)),
            actor=subclass(StreamActor, _mixins(b.actor for b in chosen)),
            redis_bus=subclass(RedisBus, _mixins(b.redis_bus for b in chosen)),
        ),
        tuple(dict.fromkeys(bound for b in chosen for bound in b.bounds)),
    )


def _mixins(groups: Iterable[tuple[type[T], ...]]) -> tuple[type[T], ...]:
    # Two canaries may share a mechanism (the same mixin, or one mixin and a subclass
    # of it): it is applied once, where the subclass stands.
    chosen = list(dict.fromkeys(m for group in groups for m in group))
    return tuple(m for m in chosen if not any(n is not m and issubclass(n, m) for n in chosen))


def subclass(base: type[T], mixins: tuple[type[T], ...]) -> type[T]:
    """``base`` with ``mixins`` in front (the same class for the same mixins, so a
    replica rebuilt after a crash is an instance of the same class)."""
    if not mixins:
        return base
    key: tuple[type, tuple[type, ...]] = (base, mixins)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type("".join(m.__name__ for m in mixins), (*mixins, base), {})
    return cast("type[T]", _SUBCLASSES[key])


_SUBCLASSES: dict[tuple[type, tuple[type, ...]], type] = {}
