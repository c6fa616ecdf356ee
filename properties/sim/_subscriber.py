"""The simulated Redis's pub/sub connection: :class:`SimSubscriber` implements
:class:`~streamcheck.impl.redis.Subscriber` (see :mod:`streamcheck.properties.sim._redis`)."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, final

import trio

from streamcheck.impl.redis import PubSubEvent, RedisConnectionError
from streamcheck.properties.sim._items import _SUBSCRIBE, _UNSUBSCRIBE, _SubConnection
from streamcheck.properties.sim._replies import _decode

if TYPE_CHECKING:
    from streamcheck.properties.sim._redis import SimRedis


@final
class SimSubscriber:
    """One simulated pub/sub connection; implements :class:`~streamcheck.impl.redis.Subscriber`
    with the coredis subscriber's client-side rules (see the module docstring)."""

    def __init__(self, sim: SimRedis, conn: _SubConnection) -> None:
        self._sim = sim
        self._conn = conn

    def __repr__(self) -> str:
        conn = self._conn
        return (
            f"<SimSubscriber {conn.name} wanted={sorted(conn.wanted)} "
            f"ready={len(conn.ready)} closed={conn.closed}>"
        )

    @property
    def connection(self) -> str:
        return self._conn.name

    async def subscribe(self, channel: str) -> None:
        """Return once the server's acknowledgement was delivered; at once if the channel
        is already wanted (subscribed, or being subscribed by another task)."""
        conn = self._conn
        if channel in conn.wanted:
            return
        if conn.closed:
            raise RedisConnectionError(f"simulated connection {conn.name} is closed")
        conn.wanted.add(channel)
        try:
            await self._sim._call(conn, [], _decode, f"SUBSCRIBE {channel}", _SUBSCRIBE, channel)
        except BaseException:
            conn.wanted.discard(channel)
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel`` at once; send UNSUBSCRIBE (connection errors ignored:
        a dead connection has no subscriptions left)."""
        conn = self._conn
        if channel not in conn.wanted:
            return
        conn.wanted.discard(channel)
        if conn.closed:
            return
        with suppress(RedisConnectionError):
            await self._sim._call(
                conn, [], _decode, f"UNSUBSCRIBE {channel}", _UNSUBSCRIBE, channel
            )

    async def receive(self) -> PubSubEvent:
        """The next delivered message; RedisConnectionError once the connection dropped
        and everything delivered before was handed out."""
        conn = self._conn
        while True:
            if conn.ready:
                return conn.ready.popleft()
            if conn.closed:
                raise RedisConnectionError(f"simulated connection {conn.name} dropped")
            event = trio.Event()
            conn.receiver = event
            try:
                await event.wait()
            finally:
                if conn.receiver is event:
                    conn.receiver = None
