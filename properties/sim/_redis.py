"""A simulated Redis whose every command execution and every pub/sub delivery is a step
the test chooses; commands run on fakeredis (real Lua), see
:mod:`streamcheck.properties.sim._engine`.

The problem: impl/ must be checked against Redis's real failure semantics (at-most-once
pub/sub, the SUBSCRIBE acknowledgement window, connection drops, asynchronous
replication and failover) under interleavings a test picks, deterministically. This
module implements exactly the :class:`~streamcheck.impl.redis.RedisLike` surface impl/ uses and
makes every nondeterministic event an explicit :class:`PendingItem`.

Example::

    with sim_time(lambda: EPOCH + trio.current_time()):
        sim = SimRedis(clock=lambda: EPOCH + trio.current_time())
        async with open_replica(sim.client("a")) as a:   # needs a step driver
            ...
        for item in sim.runnable():      # heads of every FIFO, in id order
            sim.step(item.id)            # execute a command / deliver a message
        await trio.testing.wait_all_tasks_blocked()  # let the woken callers run

The model:

* **Commands.** A :class:`SimClient` is one replica's coredis client: a connection pool
  (up to ``pool_size`` connections, 64 like coredis). A command takes the first idle
  connection, opens a new one if none is idle, or queues behind the shortest queue when
  the pool is full (``pool_size=1`` is one pipelined connection, ioredis-like). Each
  connection is a FIFO; only its head is runnable and connections are independent. A
  caller parks until its command is executed (``auto=False``), or the command executes
  at call time (``auto=True``). Executing runs it atomically on the engine and wakes the
  caller with the reply, or with :class:`~streamcheck.impl.redis.RedisConnectionError` if its
  connection dropped first. ``run_script`` is EVALSHA, then EVAL on NOSCRIPT (a second
  command, as in the coredis adapter). Connections are named ``<client>/c<n>``
  (commands) and ``<client>/s<n>`` (subscribers), numbered per client from 0.
* **Pub/sub.** ``client.subscriber()`` opens a subscriber connection (no step).
  SUBSCRIBE is a command on it; executing it registers the subscription and queues the
  acknowledgement on the connection's inbound FIFO; ``subscribe()`` returns when the
  ack is *delivered* (a step). PUBLISH (a client's or a script's) queues the message on
  the inbound FIFO of every connection subscribed at execution time and returns that
  count; with no subscriber it is lost. Only the head of an inbound FIFO is deliverable;
  :meth:`SimRedis.drop` loses any queued message (never an ack: Redis does not lose an
  ack on a live connection). Like the coredis subscriber, messages are delivered from
  the moment ``subscribe()`` is called until ``unsubscribe()`` is called; a message
  delivered for a channel no longer wanted is discarded (counted). UNSUBSCRIBE has no
  ack step: ``unsubscribe()`` returns when it executed.
* **Faults.** :meth:`SimRedis.disconnect` fails the connection's pending commands, loses
  its inbound FIFO and its subscriptions; a subscriber's ``receive()`` then raises
  ``RedisConnectionError`` (after handing out what was already delivered) and the
  client opens a new connection on its next command. ``step(id, lose_reply=True)``
  executes a command and then drops its connection (the write happened, the caller
  sees a connection error).
* **Replication** (``with_replica=True``): every executed write (scripts included) is
  queued for an asynchronous replica and applied by a ``replication`` step at the
  primary's execution time (so TTL deadlines match); never automatically, also not in
  auto mode (``replicate(n)``, ``step`` or ``run_until_quiet``). :meth:`SimRedis.failover` promotes
  the replica (unreplicated writes are lost), forgets every cached script (the next
  EVALSHA gets NOSCRIPT), starts a fresh replica as a copy and drops every connection.
* **Time.** Keys expire on the simulated clock, read once per executed command; the
  engine needs :func:`~streamcheck.properties.sim.sim_time` active (it patches fakeredis globals).
* **Determinism.** No real time, no randomness; items get ids from one counter and
  :meth:`SimRedis.runnable` lists them by id. Ids follow the order in which tasks issue
  commands, so trio's scheduler must be made deterministic by the harness.

Every step is appended to :attr:`SimRedis.records` as one typed record (see
:mod:`._trace`: command executed (with what it published), SUBSCRIBE executed and acknowledged,
message delivered or dropped, log read, connection opened or closed, failover...);
:attr:`SimRedis.trace` lists them as human-readable lines.

Layout: this module holds :class:`SimRedis`'s control API; its state and step machinery
are in :mod:`._core`, the items and connections in :mod:`._items`, the clients in
:mod:`._client` and :mod:`._subscriber`, reply shapes and trace descriptions in
:mod:`._replies`.
"""

from __future__ import annotations

from functools import partial
from typing import Final, final

import trio
import trio.testing
from redis.exceptions import ResponseError

from streamcheck.properties.sim._client import SimClient
from streamcheck.properties.sim._core import _SimCore
from streamcheck.properties.sim._items import (
    PendingItem,
    RedisCommandError,
    SimRedisStatistics,
    _Command,
    _Delivery,
    _Item,
    _item_id,
    _SubConnection,
)
from streamcheck.properties.sim._replies import _decode
from streamcheck.properties.sim._subscriber import SimSubscriber
from streamcheck.properties.sim._trace import FailedOver, MessageDropped, PubSubRelayed

__all__ = [
    "DEFAULT_POOL_SIZE",
    "PendingItem",
    "RedisCommandError",
    "SimClient",
    "SimRedis",
    "SimRedisStatistics",
    "SimSubscriber",
]

#: coredis's default pool size (streamcheck.impl.redis._coredis.DEFAULT_MAX_CONNECTIONS).
DEFAULT_POOL_SIZE: Final = 64
_READS: Final = frozenset(
    b"GET EXISTS TTL PTTL TYPE KEYS DBSIZE HGET HMGET HGETALL HLEN SMEMBERS SCARD "
    b"SISMEMBER XRANGE XREVRANGE XLEN".split()
)


@final
class SimRedis(_SimCore):
    """The simulated Redis server and its network; see the module docstring.

    ``clock`` returns seconds since the epoch (e.g. ``lambda: EPOCH +
    trio.current_time()``). The control methods are synchronous and meant to be called
    from trio code between steps; after a step the harness awaits
    ``trio.testing.wait_all_tasks_blocked()`` so the woken callers run.
    """

    def __repr__(self) -> str:
        return (
            f"<SimRedis auto={self._auto} connections={len(self._connections)} "
            f"pending={len(self._items)} commands={self._commands} "
            f"delivered={self._delivered} replica_lag={len(self._replication)} "
            f"failovers={self._failovers}>"
        )

    # -- setup -------------------------------------------------------------------

    def client(self, name: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> SimClient:
        """A new client (one replica's connection pool); names must be unique."""
        if name in self._clients:
            raise ValueError(f"client {name!r} exists already")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        client = SimClient(self, name, pool_size)
        self._clients[name] = client
        return client

    @property
    def auto(self) -> bool:
        return self._auto

    def set_auto(self, auto: bool) -> None:
        """Switch mode; switching to auto first runs everything pending."""
        if auto and not self._auto:
            self.run_until_quiet()
        self._auto = auto

    # -- inspection --------------------------------------------------------------

    def runnable(self) -> list[PendingItem]:
        """Every item that may be stepped now, by id."""
        heads: list[_Item] = []
        for conn in self._connections.values():
            if conn.commands:
                heads.append(conn.commands[0])
            if isinstance(conn, _SubConnection) and conn.inbound:
                heads.extend(conn.lane_heads())
        if self._replication:
            heads.append(self._replication[0])
        heads.sort(key=_item_id)
        return [self._public(item) for item in heads]

    def pending(self) -> list[PendingItem]:
        """Every queued item (runnable or behind a FIFO head), by id."""
        return [self._public(self._items[i]) for i in sorted(self._items)]

    def connections(self) -> list[str]:
        """Open connections, in the order they were opened."""
        return list(self._connections)

    def statistics(self) -> SimRedisStatistics:
        return SimRedisStatistics(
            commands=self._commands,
            commands_failed=self._commands_failed,
            messages_published=self._published,
            messages_delivered=self._delivered,
            messages_dropped=self._dropped,
            messages_unheard=self._unheard,
            messages_lost=self._lost,
            messages_discarded=self._discarded,
            disconnects=self._disconnects,
            failovers=self._failovers,
            replication_lag=len(self._replication),
            writes_lost=self._writes_lost,
            connections=len(self._connections),
        )

    def peek(self, *command: str | int, replica: bool = False) -> object:
        """Run a read-only command on the primary (or the replica) at once, outside the
        simulation (no step, no trace), e.g. ``peek("HGETALL", key)``; reply decoded."""
        if replica and self._replica is not None:
            self._catch_up_replica()
        engine = self._replica if replica else self._engine
        if engine is None:
            raise RuntimeError("this SimRedis has no replica")
        fields = [str(part).encode() for part in command]
        if not fields or fields[0].upper() not in _READS:
            raise ValueError(f"peek runs only read-only commands: {sorted(_READS)}")
        reply = engine.execute(fields, self._clock())
        if isinstance(reply, ResponseError):
            raise RedisCommandError(str(reply))
        return _decode(reply)

    # -- steps ---------------------------------------------------------------------

    def step(self, item_id: int, *, lose_reply: bool = False) -> None:
        """Execute the command, make the delivery or apply the replication ``item_id``,
        which must be runnable. ``lose_reply`` (commands only): execute, then drop the
        connection, so the caller gets RedisConnectionError although it ran."""
        item = self._items.get(item_id)
        if item is None or not self._is_head(item):
            raise ValueError(f"item {item_id} is not runnable")
        if lose_reply and not isinstance(item, _Command):
            raise ValueError("lose_reply applies to commands only")
        self._run(item)
        if lose_reply and isinstance(item, _Command):
            reason = "lost the reply and disconnected"
            if item.done:  # else a SUBSCRIBE whose ack the close loses
                self._fail(item, reason)
            self._close(item.connection, reason, fault=True)

    def drop(self, item_id: int) -> None:
        """Lose a queued pub/sub message (at-most-once delivery)."""
        item = self._items.get(item_id)
        if not isinstance(item, _Delivery):
            raise ValueError(f"item {item_id} is not a queued delivery")
        if item.ack is not None:
            raise ValueError("Redis does not lose a subscribe acknowledgement on a live connection")
        item.connection.inbound.remove(item)
        del self._items[item_id]
        self._dropped += 1
        self._record(
            partial(
                MessageDropped,
                item=item_id,
                connection=item.connection.name,
                client=item.connection.client.name,
                channel=item.channel,
                message=item.data,
            )
        )

    def disconnect(self, connection: str) -> None:
        """Drop one connection (see the module docstring)."""
        conn = self._connections.get(connection)
        if conn is None:
            raise ValueError(f"no open connection {connection!r}")
        self._close(conn, "disconnected", fault=True)

    def replicate(self, n: int = 1) -> int:
        """Apply up to ``n`` queued writes to the replica; returns how many were applied."""
        done = 0
        while done < n and self._replication:
            self._run(self._replication[0])
            done += 1
        return done

    def relay_pubsub(self) -> None:
        """Model Redis Cluster's pub/sub from now on: a subscriber is connected to
        another node than the stream's primary, which relays each message over the
        cluster bus. Messages from one primary keep their order; messages from two
        (before and after a failover) may interleave. A failover then drops the command
        connections only: subscribers keep their connection and their channels, and
        what the old primary already relayed may still arrive."""
        self._relayed = True
        self._record(partial(PubSubRelayed))

    def failover(self) -> None:
        """Promote the replica: unreplicated writes are lost, cached scripts forgotten,
        every connection dropped; a fresh replica copies the new primary."""
        if self._replica is None:
            raise RuntimeError("failover needs SimRedis(with_replica=True)")
        lost = len(self._replication)
        for entry in self._replication:
            del self._items[entry.id]
        self._replication.clear()
        self._catch_up_replica()
        promoted = self._replica
        promoted.hook = self._on_publish
        promoted.forget_scripts()
        self._engine.hook = None
        self._engine = promoted
        self._replica = promoted.copy(None)
        self._failovers += 1
        self._writes_lost += lost
        self._record(partial(FailedOver, writes_lost=lost))
        for conn in list(self._connections.values()):
            if self._relayed and isinstance(conn, _SubConnection):
                continue  # connected to another node, which stays up
            self._close(conn, "dropped by failover", fault=True)

    def run_until_quiet(self, limit: int = 10_000) -> int:
        """Step the lowest-id runnable item until none is left or ``limit`` steps were
        made; returns the number of steps. Tasks woken meanwhile have not run yet."""
        steps = 0
        while steps < limit:
            best: _Item | None = None
            for conn in self._connections.values():
                if conn.commands:
                    head: _Item = conn.commands[0]
                    if best is None or head.id < best.id:
                        best = head
                if isinstance(conn, _SubConnection) and conn.inbound:
                    for head in conn.lane_heads():
                        if best is None or head.id < best.id:
                            best = head
            if self._replication:
                head = self._replication[0]
                if best is None or head.id < best.id:
                    best = head
            if best is None:
                break
            self._run(best)
            steps += 1
        return steps

    async def wait_runnable(self) -> None:
        """Return once some item is runnable (at once if one is)."""
        while not self._items:
            if self._work is None:
                self._work = trio.Event()
            await self._work.wait()

    async def settle(self, *, limit: int = 10_000) -> int:
        """Alternate :meth:`run_until_quiet` and ``wait_all_tasks_blocked`` until every
        other task is blocked and nothing is runnable; returns the steps made."""
        total = 0
        while True:
            await trio.testing.wait_all_tasks_blocked()
            steps = self.run_until_quiet(limit - total)
            total += steps
            if steps == 0 or total >= limit:
                return total
