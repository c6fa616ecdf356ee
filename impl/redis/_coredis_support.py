"""What the coredis adapter needs around coredis itself: slot-safe pools, a reconnection
policy for subscribers, and the one place where coredis's exceptions become ours.

coredis 6.9.0 loses a pool slot every time a connection dies while it is leased: a
cancelled or timed-out blocking command (the connection is closed on purpose so the
server-side waiter can't steal data) or a pub/sub connection dropped by the server.
``ConnectionPool.release`` only puts *usable* connections back, and the per-connection
wrapper only refills the slot when the dead connection is sitting in the queue. After
``max_connections`` such deaths every command waits forever for a slot (or fails with
``TimeoutError`` after ``pool_timeout``). The subclasses below give the slot back as an
empty placeholder, which the pool turns into a fresh connection on the next lease. See
docs/redis.md; the regression tests are the
``test_*pool_keeps_its_slots*`` tests in ``tests/test_coredis_adapter.py``."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from typing import Any, TypeVar, final

import trio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from coredis._concurrency import QueueFull
from coredis.connection import BaseConnection, ClusterConnection
from coredis.exceptions import (
    ClusterDownError,
    ClusterError,
    ClusterRoutingError,
    RedisClusterError,
    TryAgainError,
)
from coredis.exceptions import (
    ConnectionError as CoredisConnectionError,
)
from coredis.pool import ClusterConnectionPool, ConnectionPool
from coredis.retry import RetryPolicy

from streamcheck.impl.redis._protocol import RedisConnectionError

R = TypeVar("R")


@final
class SlotSafeConnectionPool(ConnectionPool[Any]):
    """A standalone pool that keeps its slot when a leased connection dies."""

    def release(self, connection: BaseConnection) -> None:
        if connection.usable:
            super().release(connection)
            return
        # The dead connection is not in the queue, so the pool's own wrapper task will not
        # refill its slot: do it here, once (release is called once per lease).
        self.statistics.connection_released(connection)
        with suppress(QueueFull):  # every slot is already free: nothing was lost
            self._available_connections.append_nowait(None)


@final
class SlotSafeClusterConnectionPool(ClusterConnectionPool):
    """The cluster pool with the same fix, applied to the dead connection's node queue."""

    def release(self, connection: ClusterConnection) -> None:
        if connection.usable:
            super().release(connection)
            return
        self.statistics.connection_released(connection)
        with suppress(QueueFull):
            self._node_pool(connection.location).append_nowait(None)


# Errors that mean "Redis is not (or no longer) reachable, or the cluster is between
# owners": the caller's reaction is the same for all of them (retry later, or recover from
# the log), so they all become RedisConnectionError. OSError covers the builtin
# ConnectionError family (so also our own RedisConnectionError). TimeoutError covers
# coredis's pool and stream timeouts and the subscribe-ack deadline. ClusterError is what
# coredis raises once its TRYAGAIN/MOVED retry budget runs out during a migration
# (docs/redis.md). ClusterCrossSlotError is deliberately absent: it is a
# programming error, not an outage.
_CONNECTION_LIKE: tuple[type[BaseException], ...] = (
    CoredisConnectionError,
    TimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    ClusterRoutingError,
    ClusterError,
    BrokenResourceError,
    ClosedResourceError,
    EndOfStream,
)


@final
class ReconnectPolicy(RetryPolicy):
    """Retry forever, backing off while failures come in a row and starting over once a
    connection has held for ``calm_after`` seconds.

    coredis's own pub/sub policy counts attempts over the subscriber's whole lifetime and
    jitters up to 16 s, so after a few drops every reconnection waited seconds, blind to
    everything published meanwhile. Delays here are deterministic (no jitter): one process
    runs few subscribers, so there is no herd to spread out.
    """

    def __init__(
        self,
        retryable: tuple[type[BaseException], ...],
        *,
        first_delay: float,
        max_delay: float,
        calm_after: float,
    ) -> None:
        super().__init__(retryable, None)
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._calm_after = calm_after

    def delay(self, attempt_number: int) -> float:
        return min(self._max_delay, self._first_delay * 2.0 ** (attempt_number - 1))

    async def call_with_retries(
        self,
        func: Callable[..., Awaitable[R]],
        before_hook: Callable[..., Awaitable[Any] | None] | None = None,
        failure_hook: Callable[..., Awaitable[Any] | None]
        | dict[type[BaseException], Callable[..., Awaitable[Any] | None]]
        | None = None,
    ) -> R:
        streak = 0
        last_failure = -math.inf
        while True:
            try:
                if before_hook is not None and (pending := before_hook()) is not None:
                    await pending
                return await func()
            except BaseException as exc:
                if not self.will_retry(exc):
                    raise
                now = trio.current_time()
                streak = 1 if now - last_failure > self._calm_after else streak + 1
                last_failure = now
            await trio.sleep(self.delay(streak))


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The non-group exceptions inside ``exc`` (``exc`` itself when it is not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def is_connection_error(exc: BaseException) -> bool:
    """True for a coredis/anyio/OS connection failure, or a group holding only those
    (cancellations inside the group are ignored: they are the group's side effect)."""
    relevant = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)]
    return bool(relevant) and all(
        # coredis raises the bare base class for topology trouble: no startup node
        # reachable, slots not covered, no node known for a slot. Its subclasses that
        # are programming errors (cross-slot, transactions) are not matched here.
        isinstance(e, _CONNECTION_LIKE) or type(e) is RedisClusterError
        for e in relevant
    )


def describe(exc: BaseException) -> str:
    """A one-line reason naming the first real failure inside ``exc``."""
    for leaf in leaves(exc):
        if not isinstance(leaf, trio.Cancelled):
            text = str(leaf) or type(leaf).__name__
            return f"{type(leaf).__name__}: {text}"
    return type(exc).__name__


def unwrap_exit_error(
    error: BaseException, body_error: BaseException | None
) -> BaseException | None:
    """Choose what leaves an ``async with`` around a coredis task group.

    coredis clients and pubsubs own a task group, so anything leaving their block comes out
    wrapped in an ``ExceptionGroup`` (docs/redis.md). Callers should
    see the exception their own body raised, or one :class:`RedisConnectionError` when a
    background task lost the connection. Returns ``None`` to mean "re-raise ``error`` as is".
    """
    found = list(leaves(error))
    raised_by_body = body_error is not None and any(leaf is body_error for leaf in found)
    if raised_by_body and not isinstance(body_error, trio.Cancelled):
        return body_error
    if not isinstance(error, BaseExceptionGroup):
        return None
    if is_connection_error(error):
        return RedisConnectionError(f"Redis connection lost: {describe(error)}")
    if raised_by_body and all(isinstance(leaf, trio.Cancelled) for leaf in found):
        return body_error
    return None
