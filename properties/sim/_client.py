"""The simulated Redis's client: :class:`SimClient` implements
:class:`~streamcheck.impl.redis.RedisLike` over the simulation (see
:mod:`streamcheck.properties.sim._redis`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, final

from streamcheck.impl.redis import LuaScript, ScriptArg
from streamcheck.properties.sim._items import _Connection, _NoScript, _SubConnection
from streamcheck.properties.sim._replies import (
    _ARG_CHARS,
    _decode,
    _describe,
    _entries,
    _int,
    _positive,
    _short,
    _string_set,
)
from streamcheck.properties.sim._subscriber import SimSubscriber

if TYPE_CHECKING:
    from streamcheck.properties.sim._redis import SimRedis


@final
class SimClient:
    """One replica's Redis client over the simulation; implements
    :class:`~streamcheck.impl.redis.RedisLike` with the coredis adapter's reply shapes."""

    def __init__(self, sim: SimRedis, name: str, pool_size: int) -> None:
        self._sim = sim
        self.name = name
        self._pool_size = pool_size
        self._pool: list[_Connection] = []
        self._opened = 0
        self._subscribers_opened = 0

    def __repr__(self) -> str:
        return f"<SimClient {self.name} connections={len(self._pool)}>"

    @property
    def is_cluster(self) -> bool:
        return False

    def _connection(self) -> _Connection:
        best: _Connection | None = None
        for conn in self._pool:
            if not conn.commands:
                return conn
            if best is None or len(conn.commands) < len(best.commands):
                best = conn
        if best is not None and len(self._pool) >= self._pool_size:
            return best
        conn = _Connection(f"{self.name}/c{self._opened}", self)
        self._opened += 1
        self._pool.append(conn)
        self._sim._open(conn)
        return conn

    def _forget(self, conn: _Connection) -> None:
        if conn in self._pool:
            self._pool.remove(conn)

    async def _command(self, shape: Callable[[Any], Any], description: str, *fields: bytes) -> Any:
        return await self._sim._call(self._connection(), list(fields), shape, description)

    async def run_script(
        self, script: LuaScript, *, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> object:
        sha = script.sha1.encode()
        self._sim._scripts.setdefault(sha, script)
        tail = [str(len(keys)).encode(), *(k.encode() for k in keys)]
        tail += [str(a).encode() for a in args]
        description = _describe(script.name, [*keys, *map(str, args)])
        try:
            return await self._command(_decode, f"EVALSHA {description}", b"EVALSHA", sha, *tail)
        except _NoScript:
            pass
        source = script.source.encode()
        return await self._command(_decode, f"EVAL {description}", b"EVAL", source, *tail)

    async def get(self, key: str) -> str | None:
        result: str | None = await self._command(_decode, f"GET {key}", b"GET", key.encode())
        return result

    async def exists(self, key: str) -> bool:
        result: bool = await self._command(_positive, f"EXISTS {key}", b"EXISTS", key.encode())
        return result

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        result: int = await self._command(
            _int, _describe("DEL", keys), b"DEL", *(k.encode() for k in keys)
        )
        return result

    async def expire(self, key: str, seconds: int) -> bool:
        result: bool = await self._command(
            _positive, f"EXPIRE {key} {seconds}", b"EXPIRE", key.encode(), str(seconds).encode()
        )
        return result

    async def hgetall(self, key: str) -> dict[str, str]:
        result: dict[str, str] = await self._command(
            _decode, f"HGETALL {key}", b"HGETALL", key.encode()
        )
        return result

    async def sadd(self, key: str, *members: str) -> int:
        if not members:
            return 0
        result: int = await self._command(
            _int, _describe("SADD", [key, *members]), b"SADD", key.encode(),
            *(m.encode() for m in members),
        )  # fmt: skip
        return result

    async def srem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        result: int = await self._command(
            _int, _describe("SREM", [key, *members]), b"SREM", key.encode(),
            *(m.encode() for m in members),
        )  # fmt: skip
        return result

    async def smembers(self, key: str) -> set[str]:
        result: set[str] = await self._command(
            _string_set, f"SMEMBERS {key}", b"SMEMBERS", key.encode()
        )
        return result

    async def scard(self, key: str) -> int:
        result: int = await self._command(_int, f"SCARD {key}", b"SCARD", key.encode())
        return result

    async def xrange(
        self, key: str, start: str, end: str, count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        fields = [b"XRANGE", key.encode(), start.encode(), end.encode()]
        description = f"XRANGE {key} {start} {end}"
        if count is not None:
            fields += [b"COUNT", str(count).encode()]
            description += f" COUNT {count}"
        result: list[tuple[str, dict[str, str]]] = await self._command(
            _entries, description, *fields
        )
        return result

    async def publish(self, channel: str, message: str) -> int:
        result: int = await self._command(
            _int,
            f"PUBLISH {channel} {_short(message, _ARG_CHARS)}",
            b"PUBLISH",
            channel.encode(),
            message.encode(),
        )
        return result

    def subscriber(self) -> AbstractAsyncContextManager[SimSubscriber]:
        """A dedicated pub/sub connection (opening it is not a step); leaving the block
        closes it, which drops its subscriptions and anything still queued for it."""
        return self._open_subscriber()

    @asynccontextmanager
    async def _open_subscriber(self) -> AsyncIterator[SimSubscriber]:
        conn = _SubConnection(f"{self.name}/s{self._subscribers_opened}", self)
        self._subscribers_opened += 1
        self._sim._open(conn)
        try:
            yield SimSubscriber(self._sim, conn)
        finally:
            self._sim._close(conn, "closed by the client", fault=False)
