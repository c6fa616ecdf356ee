"""Redis for the benchmarks: a probe, replicas under a fresh key prefix, and clean-up.

Benchmarks share a developer's Redis with whatever else runs on it (a test suite, a
demo), so they write only under a random key prefix ``bench:<hex>:`` and use random
stream ids (channel names carry no prefix, as in LibreChat), then delete every key under
that prefix. They never FLUSHALL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import trio

from streamcheck.impl import (
    BackendUnavailable,
    GenerationJobManager,
    Keys,
    ReplicaSettings,
    open_replica,
    redact_uri_list,
    redis_client_from_env,
)
from streamcheck.impl.redis import CoredisRedis, RedisClientName, open_coredis, open_redis_client
from streamcheck.properties.bench._model import describe_error

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
#: A benchmark run should say "Redis unreachable" quickly rather than wait coredis's
#: 10 s connect timeout per attempt.
PROBE_TIMEOUT_S = 2.0
#: Deleting a few thousand keys takes milliseconds; this only bounds a dead server.
CLEANUP_TIMEOUT_S = 10.0
#: Keys deleted per DEL call.
DELETE_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisProbe:
    version: str | None = None
    #: One line saying why Redis can't be used; None when it answered.
    unavailable: str | None = None


def probe_redis(url: str) -> RedisProbe:
    """Connect, PING and read the server version (its own trio loop)."""

    async def probe() -> RedisProbe:
        async with open_coredis(url, connect_timeout=PROBE_TIMEOUT_S) as redis:
            info = await redis.raw.info("server")
            version = info.get("redis_version")
            return RedisProbe(version=str(version) if version is not None else None)

    try:
        return trio.run(probe)
    except BackendUnavailable as exc:
        return RedisProbe(unavailable=" ".join(str(exc).split()))
    except Exception as exc:  # something answered, but not as Redis does (a proxy, TLS)
        return RedisProbe(unavailable=f"no Redis at {redact_uri_list(url)}: {describe_error(exc)}")


def new_token() -> str:
    """A random token for key prefixes and stream ids."""
    return secrets.token_hex(6)


def new_run_prefix() -> str:
    """The key prefix of one bench run; each set of replicas adds its own token to it."""
    return f"bench:{new_token()}:"


def bench_client() -> RedisClientName:
    """The client the replicas and the raw references of the Redis benchmarks run on:
    ``STREAMCHECK_REDIS_CLIENT`` (coredis unless set). The admin client that reads server
    figures and cleans up is always coredis."""
    return redis_client_from_env(os.environ)


#: PUBLISH on the bench client's raw client, no adapter: (channel, message) -> receivers.
RawPublish = Callable[[str, str], Awaitable[int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisRun:
    admin: CoredisRedis
    #: The raw PUBLISH of :func:`bench_client`, for the references.
    raw_publish: RawPublish
    managers: list[GenerationJobManager]
    prefix: str
    #: Put into stream ids: channel names are not prefixed, so ids must be unique.
    token: str


@asynccontextmanager
async def redis_replicas(
    url: str, count: int, *, run_prefix: str, settings: ReplicaSettings | None = None
) -> AsyncIterator[RedisRun]:
    """``count`` replicas on one Redis, each with its own client (as separate processes
    would have), keys under a fresh prefix below ``run_prefix``, deleted when the block
    exits."""
    token = new_token()
    prefix = f"{run_prefix}{token}:"
    client = bench_client()
    async with open_coredis(url) as admin:
        try:
            async with AsyncExitStack() as stack:
                raw_publish: RawPublish = admin.raw.publish
                if client == "glide":
                    from streamcheck.impl.redis.glide import GlideRedis

                    glide = await stack.enter_async_context(open_redis_client(url, client=client))
                    assert isinstance(glide, GlideRedis)
                    glide_client = glide.raw

                    async def raw_publish(channel: str, message: str) -> int:
                        return await glide_client.publish(message, channel)

                managers: list[GenerationJobManager] = []
                for _ in range(count):
                    redis = await stack.enter_async_context(open_redis_client(url, client=client))
                    managers.append(
                        await stack.enter_async_context(
                            open_replica(redis, settings=settings, keys=Keys(prefix))
                        )
                    )
                yield RedisRun(
                    admin=admin,
                    raw_publish=raw_publish,
                    managers=managers,
                    prefix=prefix,
                    token=token,
                )
        finally:
            # After the replicas stopped, so nothing writes under the prefix any more.
            with trio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                await delete_prefixed(admin, prefix)


async def delete_prefixed(redis: CoredisRedis, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN, then DEL in batches); returns how many."""
    if not prefix or any(ch in prefix for ch in "*?[]\\"):
        raise ValueError(f"refusing to delete by a pattern-like prefix {prefix!r}")
    batch: list[str] = []
    deleted = 0
    async for key in redis.raw.scan_iter(match=f"{prefix}*", count=DELETE_BATCH):
        batch.append(key)
        if len(batch) >= DELETE_BATCH:
            deleted += await redis.delete(*batch)
            batch.clear()
    if batch:
        deleted += await redis.delete(*batch)
    return deleted
