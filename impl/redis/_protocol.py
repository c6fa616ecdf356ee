"""The whole Redis surface impl/ depends on, written down.

Two implementations exist: :mod:`streamcheck.impl.redis._coredis` (real Redis and Redis Cluster)
and the simulated Redis in ``properties/`` whose every delivery a test chooses. Keep
this surface small: each method here is one more thing the simulation must model.

Semantics every implementation must honour (they are Redis's):

* ``run_script`` runs a Lua script atomically (EVALSHA, loading it on NOSCRIPT). All
  keys of one script share a Cluster hash tag.
* Pub/sub is at-most-once. :meth:`Subscriber.subscribe` returns only once the server
  acknowledged SUBSCRIBE; a message published before that may be lost.
* A subscriber whose connection dropped and was re-established yields
  :class:`SubscriptionsRestored`: anything published in between is lost and must be
  recovered from the chunk log.
* Connection failures raise :class:`RedisConnectionError` (never a client-library type).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

ScriptArg = str | int


class RedisConnectionError(ConnectionError):
    """Redis could not be reached or dropped the connection mid-command."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha1: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha1", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class PubSubMessage:
    channel: str
    data: str


@dataclass(frozen=True, slots=True)
class SubscriptionsRestored:
    """The connection was lost and these channels were subscribed again (acknowledged)."""

    channels: frozenset[str]


PubSubEvent = PubSubMessage | SubscriptionsRestored


class Subscriber(Protocol):
    """One pub/sub connection (RESP3 push or a dedicated connection)."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for the server's acknowledgement."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def receive(self) -> PubSubEvent:
        """The next message or restoration notice, in arrival order."""


class RedisLike(Protocol):
    @property
    def is_cluster(self) -> bool:
        """True when multi-key commands must stay within one hash slot."""

    async def run_script(
        self, script: LuaScript, *, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> object: ...

    async def get(self, key: str) -> str | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, *keys: str) -> int:
        """Delete keys that share one hash slot."""

    async def expire(self, key: str, seconds: int) -> bool: ...

    async def hgetall(self, key: str) -> dict[str, str]: ...

    async def sadd(self, key: str, *members: str) -> int: ...

    async def srem(self, key: str, *members: str) -> int: ...

    async def smembers(self, key: str) -> set[str]: ...

    async def scard(self, key: str) -> int: ...

    async def xrange(
        self, key: str, start: str, end: str, count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]: ...

    async def publish(self, channel: str, message: str) -> int: ...

    def subscriber(self) -> AbstractAsyncContextManager[Subscriber]:
        """Open a dedicated pub/sub connection; closing it unsubscribes everything."""
