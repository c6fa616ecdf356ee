"""The real :class:`~streamcheck.impl.redis.RedisLike`: coredis 6.9 (standalone or Cluster)
under trio.

The problem: the rest of impl speaks only the small RedisLike surface, while coredis has
its own argument shapes, wraps errors in ExceptionGroups, leaks pool slots and reconnects
pub/sub silently. This module is the one boundary where all of that is absorbed.

Example::

    async with open_coredis("redis://:secret@127.0.0.1:6379/0") as redis:
        await redis.run_script(PUBLISH_SCRIPT, keys=[...], args=[...])
        async with redis.subscriber() as sub:
            await sub.subscribe(Keys.channel(stream_id))
            event = await sub.receive()

Edge cases:

* :func:`open_coredis` raises :class:`~streamcheck.impl.BackendUnavailable` (password redacted) when
  Redis can't be reached or refuses the credentials at startup. Afterwards every
  connection failure or timeout is a :class:`~streamcheck.impl.redis.RedisConnectionError`; other
  Redis errors (a Lua error, WRONGTYPE, a cross-slot call) are programming errors and
  propagate as coredis raised them.
* An exception raised in the ``async with`` body leaves it unchanged, not wrapped in the
  ExceptionGroup coredis's task group would add.
* In Cluster mode, multi-key calls (``delete``, ``run_script``) must use keys of one slot,
  :meth:`CoredisRedis.publish` returns the receivers on the executing node only, and
  ``max_connections`` is per node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from typing import Any, final
from urllib.parse import urlsplit

import coredis
import trio
from coredis.connection import TCPLocation
from coredis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    NoScriptError,
    ResponseError,
)
from coredis.exceptions import (
    ConnectionError as CoredisConnectionError,
)
from coredis.retry import ConstantRetryPolicy, NoRetryPolicy

from streamcheck.impl._config import redact_uri_list
from streamcheck.impl._errors import BackendUnavailable
from streamcheck.impl.redis._batching import BatcherStats, Outcome, ScriptBatcher, ScriptCall
from streamcheck.impl.redis._coredis_subscriber import CoredisSubscriber
from streamcheck.impl.redis._coredis_support import (
    ReconnectPolicy,
    SlotSafeClusterConnectionPool,
    SlotSafeConnectionPool,
    describe,
    is_connection_error,
    leaves,
    unwrap_exit_error,
)
from streamcheck.impl.redis._counters import ClientCounters, ClientStatistics
from streamcheck.impl.redis._protocol import LuaScript, RedisConnectionError, ScriptArg

# LibreChat's Redis client connect timeout, 10 000 ms (docs/design.md). Used
# for establishing each connection and for the startup PING.
CONNECT_TIMEOUT_S = 10.0
# coredis's own default pool size.
DEFAULT_MAX_CONNECTIONS = 64

# How a subscriber reconnects: first retry after 20 ms, doubling up to 1 s while failures
# follow each other, from scratch once a connection held for 5 s. Pub/sub losses can only
# be recovered once the subscriber is back, so it should come back fast (LibreChat's
# ioredis caps its delay at 3 s; coredis was seen to reconnect in about 0.2 s: docs/redis.md).
_SUBSCRIBER_RETRY = ReconnectPolicy(
    (CoredisConnectionError, TimeoutError), first_delay=0.02, max_delay=1.0, calm_after=5.0
)

RedisClient = coredis.Redis[str] | coredis.RedisCluster[str]


#: The figures of :meth:`statistics` (one type for every adapter).
CoredisStatistics = ClientStatistics


@final
class CoredisRedis:
    """:class:`~streamcheck.impl.redis.RedisLike` over a coredis client; build it with
    :func:`open_coredis`."""

    def __init__(self, client: RedisClient, *, url: str) -> None:
        self._client = client
        self._url = redact_uri_list(url)
        self._counters = ClientCounters()
        self._batcher = ScriptBatcher(self._send_scripts)

    def __repr__(self) -> str:
        c = self._counters
        return (
            f"<CoredisRedis {self._url} cluster={self.is_cluster} commands={c.commands} "
            f"connection_errors={c.connection_errors} restorations={c.restorations}>"
        )

    @property
    def is_cluster(self) -> bool:
        return isinstance(self._client, coredis.RedisCluster)

    @property
    def raw(self) -> RedisClient:
        """The underlying coredis client, for tests and diagnostics only: impl code must
        stay within RedisLike so the simulation can stand in for it."""
        return self._client

    def statistics(self) -> CoredisStatistics:
        return self._counters.snapshot()

    @contextmanager
    def _command(self, count: int = 1) -> Iterator[None]:
        self._counters.commands += count
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, trio.Cancelled) or not is_connection_error(exc):
                raise
            self._counters.connection_errors += 1
            raise RedisConnectionError(f"Redis at {self._url}: {describe(exc)}") from exc

    async def run_script(
        self, script: LuaScript, *, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> object:
        """EVALSHA, or EVAL when the server does not have the script (a restart, SCRIPT
        FLUSH, a freshly promoted replica). EVAL also caches the script, and in Cluster it is
        routed by ``keys`` like EVALSHA, so it lands on the node that owns their slot.

        Calls made while others are in flight share their next round trip (one pipeline;
        see :mod:`streamcheck.impl.redis._batching`)."""
        return await self._batcher.call(ScriptCall(script, keys, args))

    def batching(self) -> BatcherStats:
        return self._batcher.statistics()

    async def _send_scripts(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        """One round trip for all ``calls`` (a non-transactional pipeline; in Cluster,
        one per node), then EVAL, one by one and in order, for those the server did not
        have the script for: those never ran, so nothing runs twice."""
        if len(calls) == 1:
            # A lone call skips the pipeline machinery, which costs more than it saves.
            return [await _outcome_of(self._run_script_now(calls[0]))]
        try:
            with self._command(len(calls)):
                async with self._client.pipeline(transaction=False, raise_on_error=False) as pipe:
                    for call in calls:
                        pipe.evalsha(call.script.sha1, keys=list(call.keys), args=list(call.args))
                results = pipe.results
        except RedisConnectionError as exc:
            return [RedisConnectionError(str(exc)) for _ in calls]
        if results is None or len(results) != len(calls):
            raise RedisConnectionError(f"pipeline of {len(calls)} calls answered {results!r}")
        outcomes: list[Outcome] = []
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):
                outcomes.append(await _outcome_of(self._eval(call)))
            elif isinstance(result, BaseException) and is_connection_error(result):
                self._counters.connection_errors += 1
                outcomes.append(RedisConnectionError(f"Redis at {self._url}: {describe(result)}"))
            else:
                outcomes.append(result)
        return outcomes

    async def _run_script_now(self, call: ScriptCall) -> object:
        try:
            with self._command():
                return await self._client.evalsha(
                    call.script.sha1, keys=list(call.keys), args=list(call.args)
                )
        except NoScriptError:
            pass
        return await self._eval(call)

    async def _eval(self, call: ScriptCall) -> object:
        self._counters.script_loads += 1
        with self._command():
            return await self._client.eval(
                call.script.source, keys=list(call.keys), args=list(call.args)
            )

    async def get(self, key: str) -> str | None:
        with self._command():
            return await self._client.get(key)

    async def exists(self, key: str) -> bool:
        with self._command():
            return await self._client.exists([key]) > 0

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with self._command():
            return await self._client.delete(list(keys))

    async def expire(self, key: str, seconds: int) -> bool:
        with self._command():
            return await self._client.expire(key, seconds)

    async def hgetall(self, key: str) -> dict[str, str]:
        with self._command():
            return dict(await self._client.hgetall(key))

    async def sadd(self, key: str, *members: str) -> int:
        if not members:
            return 0
        with self._command():
            return await self._client.sadd(key, list(members))

    async def srem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        with self._command():
            return await self._client.srem(key, list(members))

    async def smembers(self, key: str) -> set[str]:
        with self._command():
            return set(await self._client.smembers(key))

    async def scard(self, key: str) -> int:
        with self._command():
            return await self._client.scard(key)

    async def xrange(
        self, key: str, start: str, end: str, count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        with self._command():
            entries = await self._client.xrange(key, start, end, count)
        return [
            (str(entry.identifier), {str(f): str(v) for f, v in entry.field_values.items()})
            for entry in entries
        ]

    async def publish(self, channel: str, message: str) -> int:
        with self._command():
            return await self._client.publish(channel, message)

    def subscriber(self) -> AbstractAsyncContextManager[CoredisSubscriber]:
        """A dedicated pub/sub connection (classic SUBSCRIBE, also in Cluster: sharded
        pub/sub breaks silently on failover and migration, docs/redis.md). Leaving the
        block closes the connection, which drops every subscription.

        Raises :class:`RedisConnectionError` if Redis is unreachable when it opens. Later
        drops are repaired in the background and reported as
        :class:`~streamcheck.impl.redis.SubscriptionsRestored`."""
        return self._open_subscriber()

    @asynccontextmanager
    async def _open_subscriber(self) -> AsyncIterator[CoredisSubscriber]:
        # coredis would retry its first connection forever (it uses the reconnection
        # policy for it), so an outage at open time would hang here: check first.
        with self._command():
            await self._client.ping()
        self._counters.subscribers_opened += 1
        body_error: BaseException | None = None
        try:
            # Leave by cancelling this scope, never by falling out of the pubsub block:
            # coredis hangs on a normal exit while it is reconnecting (docs/redis.md).
            with trio.CancelScope() as scope:
                pubsub = self._client.pubsub(
                    ignore_subscribe_messages=False, retry_policy=_SUBSCRIBER_RETRY
                )
                async with pubsub:
                    try:
                        yield CoredisSubscriber(pubsub, self._counters)
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        _close_pubsub_connection(pubsub)
                        scope.cancel()
        except BaseException as exc:
            replacement = unwrap_exit_error(exc, body_error)
            if replacement is None:
                raise
            if isinstance(replacement, RedisConnectionError):
                self._counters.connection_errors += 1
        else:
            return
        raise replacement


def _close_pubsub_connection(pubsub: Any) -> None:
    """Close the pubsub's connection so it goes back to the pool as dead, never as a
    reusable connection that is still subscribed."""
    # No connection (never connected, or between reconnections): nothing to close.
    with suppress(CoredisConnectionError):
        pubsub.connection.invalidate()


@asynccontextmanager
async def open_coredis(
    url: str,
    *,
    cluster: bool = False,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> AsyncIterator[CoredisRedis]:
    """Connect to Redis (``redis://`` or ``rediss://``, credentials in the URL) and PING it.

    With ``cluster=True`` the URL names one startup node; the rest are discovered.
    Raises :class:`~streamcheck.impl.BackendUnavailable` once, with the password redacted, if the
    server can't be reached, refuses the credentials or does not answer the PING within
    ``connect_timeout`` seconds.
    """
    client = _build_client(url, cluster, max_connections, connect_timeout)
    started = False
    body_error: BaseException | None = None
    try:
        async with client:
            with trio.move_on_after(connect_timeout) as probe:
                await client.ping()
            if probe.cancelled_caught:
                raise _NoPong(f"no answer to PING within {connect_timeout} s")
            started = True
            redis = CoredisRedis(client, url=url)
            async with trio.open_nursery() as nursery:
                await nursery.start(redis._batcher.run)
                try:
                    yield redis
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    nursery.cancel_scope.cancel()
    except BaseException as exc:
        outcome = unwrap_exit_error(exc, body_error) if started else _startup_error(exc, url)
        if outcome is None:
            raise
    else:
        return
    if isinstance(outcome, BackendUnavailable):
        # coredis's chain (an ExceptionGroup of per-attempt errors) adds nothing the
        # reason does not say, and may repeat the URL unredacted.
        raise outcome from None
    raise outcome


class _NoPong(Exception):
    """Internal: the server accepted the connection but did not answer the PING."""


def _startup_error(exc: BaseException, url: str) -> BackendUnavailable | None:
    """The :class:`BackendUnavailable` for a failed start, or ``None`` when ``exc`` is not a
    backend problem (a cancellation, a bug) and must propagate as it is."""
    found = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)]
    if not found:
        return None
    # BackendUnavailable takes (and redacts) one URL: name the other startup nodes, if
    # any, in the reason.
    first, _, others = url.partition(",")

    def unavailable(reason: str) -> BackendUnavailable:
        if others:
            reason = f"{reason} (startup nodes also tried: {redact_uri_list(others)})"
        return BackendUnavailable(first.strip(), reason)

    if any(isinstance(e, _NoPong) for e in found):
        return unavailable(next(str(e) for e in found if isinstance(e, _NoPong)))
    if all(isinstance(e, AuthenticationError | AuthorizationError) for e in found):
        return unavailable(f"authentication failed ({describe(exc)})")
    if is_connection_error(exc):
        return unavailable(describe(exc))
    # The server answered the connection's set-up (SELECT, HELLO) with an error, such
    # as "DB index is out of range": this URL names nothing it will serve.
    if all(isinstance(e, ResponseError) for e in found):
        return unavailable(f"the server refused the connection ({describe(exc)})")
    return None


#: coredis retries a command after a connection error by default. A connection that
#: drops after Redis ran the publish script but before its reply arrived would then
#: publish the event twice, under two seqs. impl treats a connection error as "maybe
#: done" instead, and never retries a write blindly.
_NO_RETRY = NoRetryPolicy()


def _build_client(
    url: str, cluster: bool, max_connections: int, connect_timeout: float
) -> RedisClient:
    # Pools are built from the URL ourselves because Redis.from_url ignores
    # connection_pool_cls; decode_components undoes percent-encoding in user/password.
    uris = [uri.strip() for uri in url.split(",") if uri.strip()]
    if cluster:
        # Like LibreChat, a comma-separated list names several startup nodes; the first
        # URI's credentials and options apply to all of them.
        nodes = [urlsplit(uri) for uri in uris]
        cluster_pool = SlotSafeClusterConnectionPool.from_url(
            uris[0],
            decode_components=True,
            decode_responses=True,
            max_connections=max_connections,
            max_connections_per_node=True,
            connect_timeout=connect_timeout,
            startup_nodes=[TCPLocation(n.hostname or "localhost", n.port or 6379) for n in nodes],
        )
        return coredis.RedisCluster(
            connection_pool=cluster_pool,
            decode_responses=True,
            verify_version=False,  # as for a single server, below
            # A cluster that says CLUSTERDOWN refused the command: retrying is safe.
            retry_policy=ConstantRetryPolicy((ClusterDownError,), retries=2, delay=0.1),
        )
    if len(uris) != 1:
        raise ValueError("several Redis URIs name Cluster startup nodes: pass cluster=True")
    pool = SlotSafeConnectionPool.from_url(
        uris[0],
        decode_components=True,
        decode_responses=True,
        max_connections=max_connections,
        connect_timeout=connect_timeout,
    )
    return coredis.Redis(
        connection_pool=pool,
        decode_responses=True,
        # The check costs each command a look at the environment; every command sent
        # here exists on every server coredis can speak to (RESP3: Redis 6 and later).
        verify_version=False,
        retry_policy=_NO_RETRY,
    )


async def _outcome_of(call: Awaitable[object]) -> Outcome:
    """The call's reply, or the exception it raised (cancellation excepted)."""
    try:
        return await call
    except Exception as exc:
        return exc
