"""A :class:`~streamcheck.impl.redis.RedisLike` over valkey-glide 2.x (Rust core), standalone
or Cluster, under trio. Opt-in: ``redis_client="glide"`` (``STREAMCHECK_REDIS_CLIENT``) and the
``streamcheck[glide]`` extra; coredis stays the default (docs/redis.md says why).

The problem: glide halves the Python cost of a command and holds pub/sub latency where
coredis saturates, but it connects while blocking the event loop, times a command out after
250 ms by default, re-subscribes a dropped pub/sub connection without telling anyone, and
serves one ``trio.run`` at a time per process. This module is the boundary that absorbs all
of that, with the same contract as the coredis adapter.

Example::

    async with open_glide("redis://:secret@127.0.0.1:6379/0") as redis:
        await redis.run_script(PUBLISH_SCRIPT, keys=[...], args=[...])
        async with redis.subscriber() as sub:
            await sub.subscribe(Keys.channel(stream_id))
            event = await sub.receive()

Edge cases:

* Clients are created with ``lazy_connect``: ``create()`` then returns at once and the
  connection is made by the first command, in glide's own threads. The startup PING,
  bounded by ``connect_timeout`` in a trio cancel scope, is that first command. (Without it,
  ``create()`` holds the event loop for the whole connect: 2 s against a closed port.)
* :func:`open_glide` raises :class:`~streamcheck.impl.BackendUnavailable` (password redacted)
  when Redis can't be reached or refuses the credentials, and
  :class:`~streamcheck.impl.redis.GlideRunConflict` when another ``trio.run`` of this process
  holds glide clients. Afterwards every connection failure or timeout is a
  :class:`~streamcheck.impl.redis.RedisConnectionError`; other Redis errors (a Lua error,
  WRONGTYPE, a cross-slot call) propagate as glide's ``RequestError``.
* No command is retried after a connection error (glide never re-sends a request the server
  may already have), so a connection error means "maybe done", as with coredis.
* In Cluster mode multi-key calls must stay within one slot, and :meth:`GlideRedis.publish`
  returns the receivers on the executing node only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import final

import trio
from glide import (
    AdvancedGlideClientConfiguration,
    AdvancedGlideClusterClientConfiguration,
    BackoffStrategy,
    Batch,
    ClusterBatch,
    GlideClient,
    GlideClientConfiguration,
    GlideClusterClient,
    GlideClusterClientConfiguration,
    GlideError,
    NodeAddress,
    ServerCredentials,
    TlsAdvancedConfiguration,
)

from streamcheck.impl._config import redact_uri_list
from streamcheck.impl._errors import BackendUnavailable
from streamcheck.impl.redis._batching import BatcherStats, Outcome, ScriptBatcher, ScriptCall
from streamcheck.impl.redis._counters import ClientCounters, ClientStatistics
from streamcheck.impl.redis._glide_subscriber import GlideSubscriber, open_glide_subscriber
from streamcheck.impl.redis._glide_support import (
    ConnectionSettings,
    claim_trio_run,
    decode,
    describe,
    is_connection_error,
    is_no_script,
    parse_url,
    text,
)
from streamcheck.impl.redis._protocol import LuaScript, RedisConnectionError, ScriptArg

# LibreChat's Redis client connect timeout, 10 000 ms (docs/design.md): the bound of the
# startup PING, which makes the first connection.
CONNECT_TIMEOUT_S = 10.0
#: glide's per-command deadline. Its default, 250 ms, fails healthy commands on a busy
#: 2-core machine and during a slot migration (glide backs off ~0.65 s there). 5 s is
#: longer than any legitimate command here, including a subscribe acknowledgement
#: (:data:`~streamcheck.impl.redis._glide_subscriber.SUBSCRIBE_TIMEOUT_MS`).
REQUEST_TIMEOUT_MS = 5000
#: One TCP (or TLS) connection attempt. glide also uses it for every reconnection, during
#: which that connection's commands wait, so it stays short; the startup PING retries
#: within CONNECT_TIMEOUT_S.
CONNECTION_TIMEOUT_MS = 2000
#: Reconnection: 20 ms doubling to about 1.3 s, then every 1.3 s for ever (the coredis
#: subscriber's 20 ms-to-1 s policy; LibreChat's ioredis caps its delay at 3 s).
RECONNECT = BackoffStrategy(num_of_retries=6, factor=20, exponent_base=2)
#: How often glide compares the subscriptions it wants with those the server has and
#: repairs the difference. Its default leaves a killed subscriber unsubscribed for about
#: 3 s; at 100 ms the gap was about 100 ms (docs/redis.md).
PUBSUB_RECONCILIATION_MS = 100

GlideAnyClient = GlideClient | GlideClusterClient


#: The figures of :meth:`statistics` (one type for every adapter).
GlideStatistics = ClientStatistics


@final
class GlideRedis:
    """:class:`~streamcheck.impl.redis.RedisLike` over a glide client; build it with
    :func:`open_glide`."""

    def __init__(
        self, client: GlideAnyClient, *, url: str, settings: ConnectionSettings, cluster: bool
    ) -> None:
        self._client = client
        self._url = redact_uri_list(url)
        self._settings = settings
        self._cluster = cluster
        self._counters = ClientCounters()
        self._batcher = ScriptBatcher(self._send_scripts)

    def __repr__(self) -> str:
        c = self._counters
        return (
            f"<GlideRedis {self._url} cluster={self._cluster} commands={c.commands} "
            f"connection_errors={c.connection_errors} restorations={c.restorations}>"
        )

    @property
    def is_cluster(self) -> bool:
        return self._cluster

    @property
    def raw(self) -> GlideAnyClient:
        """The underlying glide client, for tests and diagnostics only."""
        return self._client

    def statistics(self) -> GlideStatistics:
        return self._counters.snapshot()

    def batching(self) -> BatcherStats:
        return self._batcher.statistics()

    @contextmanager
    def _command(self, count: int = 1) -> Iterator[None]:
        self._counters.commands += count
        try:
            yield
        except GlideError as exc:
            if not is_connection_error(exc):
                raise
            self._counters.connection_errors += 1
            raise RedisConnectionError(f"Redis at {self._url}: {describe(exc)}") from exc

    async def _call(self, *command: str | int) -> object:
        with self._command():
            return await self._client.custom_command([str(part) for part in command])

    async def run_script(
        self, script: LuaScript, *, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> object:
        """EVALSHA, or EVAL when the server does not have the script; concurrent calls
        share one pipelined round trip (:mod:`streamcheck.impl.redis._batching`)."""
        return await self._batcher.call(ScriptCall(script, keys, args))

    async def _send_scripts(self, calls: Sequence[ScriptCall]) -> list[Outcome]:
        """One round trip for all ``calls`` (a non-atomic batch; in Cluster glide splits it
        per node), then EVAL, one by one and in order, for those the server did not have the
        script for: those never ran, so nothing runs twice."""
        if len(calls) == 1:
            return [await _outcome_of(self._run_script_now(calls[0]))]
        batch: Batch | ClusterBatch = (
            ClusterBatch(is_atomic=False) if self._cluster else Batch(is_atomic=False)
        )
        for call in calls:
            batch.custom_command(_evalsha(call))
        try:
            with self._command(len(calls)):
                if isinstance(self._client, GlideClusterClient):
                    assert isinstance(batch, ClusterBatch)
                    results = await self._client.exec(batch, raise_on_error=False)
                else:
                    assert isinstance(batch, Batch)
                    results = await self._client.exec(batch, raise_on_error=False)
        except RedisConnectionError as exc:
            return [RedisConnectionError(str(exc)) for _ in calls]
        if results is None or len(results) != len(calls):
            raise RedisConnectionError(f"pipeline of {len(calls)} calls answered {results!r}")
        outcomes: list[Outcome] = []
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, GlideError):
                if is_no_script(result):
                    outcomes.append(await _outcome_of(self._eval(call)))
                elif is_connection_error(result):
                    self._counters.connection_errors += 1
                    outcomes.append(
                        RedisConnectionError(f"Redis at {self._url}: {describe(result)}")
                    )
                else:
                    outcomes.append(result)
            else:
                outcomes.append(decode(result))
        return outcomes

    async def _run_script_now(self, call: ScriptCall) -> object:
        try:
            with self._command():
                return decode(await self._client.custom_command(_evalsha(call)))
        except GlideError as exc:
            if not is_no_script(exc):
                raise
        return await self._eval(call)

    async def _eval(self, call: ScriptCall) -> object:
        self._counters.script_loads += 1
        with self._command():
            reply = await self._client.custom_command(
                ["EVAL", call.script.source, str(len(call.keys)), *call.keys]
                + [str(arg) for arg in call.args]
            )
        return decode(reply)

    async def get(self, key: str) -> str | None:
        with self._command():
            value = await self._client.get(key)
        return None if value is None else text(value)

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
            reply = await self._client.hgetall(key)
        return {text(field): text(value) for field, value in reply.items()}

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
            reply = await self._client.smembers(key)
        return {text(member) for member in reply}

    async def scard(self, key: str) -> int:
        with self._command():
            return await self._client.scard(key)

    async def xrange(
        self, key: str, start: str, end: str, count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        command: list[str | int] = ["XRANGE", key, start, end]
        if count is not None:
            command += ["COUNT", count]
        reply = await self._call(*command)
        if reply is None:
            return []
        if not isinstance(reply, dict):
            raise RedisConnectionError(f"unexpected XRANGE reply {reply!r}")
        # glide answers {entry id: [[field, value], ...]}, in the stream's order.
        entries: list[tuple[str, dict[str, str]]] = []
        for entry_id, pairs in reply.items():
            fields: dict[str, str] = {}
            for pair in pairs:
                fields[text(pair[0])] = text(pair[1])
            entries.append((text(entry_id), fields))
        return entries

    async def publish(self, channel: str, message: str) -> int:
        with self._command():
            return await self._client.publish(message, channel)

    def subscriber(self) -> AbstractAsyncContextManager[GlideSubscriber]:
        """A dedicated pub/sub client (classic SUBSCRIBE, also in Cluster: docs/redis.md).
        Leaving the block closes it, which drops every subscription.

        Raises :class:`RedisConnectionError` if Redis is unreachable when it opens. Later
        drops are repaired by glide and reported as
        :class:`~streamcheck.impl.redis.SubscriptionsRestored`."""
        return self._open_subscriber()

    @asynccontextmanager
    async def _open_subscriber(self) -> AsyncIterator[GlideSubscriber]:
        self._counters.subscribers_opened += 1
        async with open_glide_subscriber(
            lambda subscriptions: _create_client(
                self._settings, self._cluster, subscriptions=subscriptions
            ),
            self._counters,
            connect_timeout=CONNECT_TIMEOUT_S,
        ) as subscriber:
            yield subscriber


def _evalsha(call: ScriptCall) -> list[str]:
    return ["EVALSHA", call.script.sha1, str(len(call.keys)), *call.keys] + [
        str(arg) for arg in call.args
    ]


async def _create_client(
    settings: ConnectionSettings,
    cluster: bool,
    *,
    subscriptions: bool = False,
) -> GlideAnyClient:
    """A lazily connecting client (``create()`` returns without touching the network)."""
    addresses = [NodeAddress(e.host, e.port) for e in settings.endpoints]
    credentials = (
        ServerCredentials(password=settings.password, username=settings.username)
        if settings.password is not None
        else None
    )
    tls = (
        TlsAdvancedConfiguration(root_pem_cacerts=settings.ca_certificates)
        if settings.ca_certificates is not None
        else None
    )
    if cluster:
        cluster_config = GlideClusterClientConfiguration(
            addresses,
            use_tls=settings.use_tls,
            credentials=credentials,
            request_timeout=REQUEST_TIMEOUT_MS,
            reconnect_strategy=RECONNECT,
            lazy_connect=True,
            pubsub_subscriptions=(
                GlideClusterClientConfiguration.PubSubSubscriptions(
                    channels_and_patterns={}, callback=None, context=None
                )
                if subscriptions
                else None
            ),
            advanced_config=AdvancedGlideClusterClientConfiguration(
                connection_timeout=CONNECTION_TIMEOUT_MS,
                tls_config=tls,
                pubsub_reconciliation_interval=PUBSUB_RECONCILIATION_MS,
            ),
        )
        return await GlideClusterClient.create(cluster_config)
    config = GlideClientConfiguration(
        addresses,
        use_tls=settings.use_tls,
        credentials=credentials,
        request_timeout=REQUEST_TIMEOUT_MS,
        reconnect_strategy=RECONNECT,
        database_id=settings.database,
        lazy_connect=True,
        pubsub_subscriptions=(
            GlideClientConfiguration.PubSubSubscriptions(
                channels_and_patterns={}, callback=None, context=None
            )
            if subscriptions
            else None
        ),
        advanced_config=AdvancedGlideClientConfiguration(
            connection_timeout=CONNECTION_TIMEOUT_MS,
            tls_config=tls,
            pubsub_reconciliation_interval=PUBSUB_RECONCILIATION_MS,
        ),
    )
    return await GlideClient.create(config)


@asynccontextmanager
async def open_glide(
    url: str,
    *,
    cluster: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> AsyncIterator[GlideRedis]:
    """Connect to Redis (``redis://`` or ``rediss://``, credentials in the URL) and PING it.

    With ``cluster=True`` the URL names one or more startup nodes (comma-separated); the
    rest are discovered. Raises :class:`~streamcheck.impl.BackendUnavailable` once, with the
    password redacted, if the server can't be reached, refuses the credentials or does not
    answer the PING within ``connect_timeout`` seconds.
    """
    uris = [uri.strip() for uri in url.split(",") if uri.strip()]
    if not cluster and len(uris) != 1:
        raise ValueError("several Redis URIs name Cluster startup nodes: pass cluster=True")
    settings = parse_url(url)
    body_error: BaseException | None = None
    with claim_trio_run():
        client = await _create_client(settings, cluster)
        try:
            await _startup_ping(client, url, connect_timeout)
            redis = GlideRedis(client, url=url, settings=settings, cluster=cluster)
            async with trio.open_nursery() as nursery:
                await nursery.start(redis._batcher.run)
                try:
                    yield redis
                except BaseException as exc:
                    # Re-raised below, outside the nursery, so callers see their own
                    # exception rather than an ExceptionGroup around it.
                    body_error = exc
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await client.close()
    if body_error is not None:
        raise body_error


async def _startup_ping(client: GlideAnyClient, url: str, connect_timeout: float) -> None:
    first, _, others = url.partition(",")

    def unavailable(reason: str) -> BackendUnavailable:
        if others:
            reason = f"{reason} (startup nodes also tried: {redact_uri_list(others)})"
        return BackendUnavailable(first.strip(), reason)

    try:
        with trio.move_on_after(connect_timeout) as probe:
            await client.ping()
    except GlideError as exc:
        lowered = str(exc).lower()
        if "auth" in lowered or "wrongpass" in lowered or "noperm" in lowered:
            raise unavailable(f"authentication failed ({describe(exc)})") from None
        if is_connection_error(exc):
            raise unavailable(describe(exc)) from None
        raise unavailable(f"the server refused the connection ({describe(exc)})") from None
    if probe.cancelled_caught:
        raise unavailable(f"no answer to PING within {connect_timeout} s")


async def _outcome_of(call: Awaitable[object]) -> Outcome:
    """The call's reply, or the exception it raised (cancellation excepted)."""
    try:
        return await call
    except Exception as exc:
        return exc
