"""A simulated Redis whose every command execution and every pub/sub delivery is a step
the test chooses; commands run on fakeredis (real Lua), see :mod:`properties.sim._engine`.

The problem: impl/ must be checked against Redis's real failure semantics (at-most-once
pub/sub, the SUBSCRIBE acknowledgement window, connection drops, asynchronous
replication and failover) under interleavings a test picks, deterministically. This
module implements exactly the :class:`~impl.redis.RedisLike` surface impl/ uses and
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
  caller with the reply, or with :class:`~impl.redis.RedisConnectionError` if its
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
  engine needs :func:`~properties.sim.sim_time` active (it patches fakeredis globals).
* **Determinism.** No real time, no randomness; items get ids from one counter and
  :meth:`SimRedis.runnable` lists them by id. Ids follow the order in which tasks issue
  commands, so trio's scheduler must be made deterministic by the harness.

Every step is appended to :attr:`SimRedis.trace` as one human-readable line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final, Literal, final

import trio
import trio.testing
from redis.exceptions import NoScriptError, ResponseError

from impl.redis import LuaScript, PubSubMessage, RedisConnectionError
from impl.redis._protocol import PubSubEvent, ScriptArg
from properties.sim._engine import Engine

__all__ = [
    "DEFAULT_POOL_SIZE",
    "PendingItem",
    "RedisCommandError",
    "SimClient",
    "SimRedis",
    "SimRedisStatistics",
    "SimSubscriber",
]

#: coredis's default pool size (impl.redis._coredis.DEFAULT_MAX_CONNECTIONS).
DEFAULT_POOL_SIZE: Final = 64

ItemKind = Literal["command", "delivery", "replication"]

_WRITES: Final = frozenset({b"EVALSHA", b"EVAL", b"DEL", b"EXPIRE", b"SADD", b"SREM"})
_READS: Final = frozenset(
    b"GET EXISTS TTL PTTL TYPE KEYS DBSIZE HGET HMGET HGETALL HLEN SMEMBERS SCARD "
    b"SISMEMBER XRANGE XREVRANGE XLEN".split()
)
_PLAIN, _SUBSCRIBE, _UNSUBSCRIBE = 0, 1, 2
_ARG_CHARS: Final = 48
_DESCRIPTION_CHARS: Final = 240


class RedisCommandError(Exception):
    """Redis answered with an error (a Lua error, WRONGTYPE, ...): a programming error,
    as the coredis adapter lets its ResponseError propagate."""


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One runnable step: a command to execute, a delivery, or a replication."""

    id: int
    kind: ItemKind
    connection: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimRedisStatistics:
    #: Commands executed (SUBSCRIBE/UNSUBSCRIBE included).
    commands: int
    #: Commands that failed with RedisConnectionError (not executed, or reply lost).
    commands_failed: int
    #: Message deliveries queued by PUBLISH (one per receiving connection).
    messages_published: int
    messages_delivered: int
    #: Lost by :meth:`SimRedis.drop`.
    messages_dropped: int
    #: PUBLISHes that found no subscriber.
    messages_unheard: int
    #: Queued deliveries lost with their connection (disconnect, failover, close).
    messages_lost: int
    #: Delivered for a channel the subscriber had already unsubscribed.
    messages_discarded: int
    disconnects: int
    failovers: int
    #: Writes waiting for the replica.
    replication_lag: int
    #: Unreplicated writes discarded by failovers.
    writes_lost: int
    connections: int


class _Connection:
    __slots__ = ("client", "closed", "commands", "name")

    def __init__(self, name: str, client: SimClient) -> None:
        self.name = name
        self.client = client
        self.commands: deque[_Command] = deque()
        self.closed = False


class _SubConnection(_Connection):
    __slots__ = ("inbound", "ready", "receiver", "server_channels", "wanted")

    def __init__(self, name: str, client: SimClient) -> None:
        super().__init__(name, client)
        self.inbound: deque[_Delivery] = deque()
        self.ready: deque[PubSubMessage] = deque()
        self.wanted: set[str] = set()
        self.server_channels: set[str] = set()
        self.receiver: trio.Event | None = None


class _Command:
    __slots__ = (
        "channel",
        "connection",
        "description",
        "done",
        "error",
        "event",
        "fields",
        "id",
        "kind",
        "public",
        "result",
        "shape",
    )

    def __init__(
        self,
        item_id: int,
        connection: _Connection,
        fields: list[bytes],
        shape: Callable[[Any], Any],
        description: str,
        kind: int,
        channel: str,
        event: trio.Event | None,
    ) -> None:
        self.id = item_id
        self.connection = connection
        self.fields = fields
        self.shape = shape
        self.description = description
        self.kind = kind
        self.channel = channel
        self.event = event
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.public: PendingItem | None = None


class _Delivery:
    __slots__ = ("ack", "channel", "connection", "data", "id", "public")

    def __init__(
        self,
        item_id: int,
        connection: _SubConnection,
        channel: str,
        data: str,
        ack: _Command | None,
    ) -> None:
        self.id = item_id
        self.connection = connection
        self.channel = channel
        self.data = data
        self.ack = ack
        self.public: PendingItem | None = None


class _Replication:
    __slots__ = ("at", "description", "fields", "id", "public")

    def __init__(self, item_id: int, fields: list[bytes], at: float, description: str) -> None:
        self.id = item_id
        self.fields = fields
        self.at = at
        self.description = description
        self.public: PendingItem | None = None


_Item = _Command | _Delivery | _Replication


@final
class SimRedis:
    """The simulated Redis server and its network; see the module docstring.

    ``clock`` returns seconds since the epoch (e.g. ``lambda: EPOCH +
    trio.current_time()``). The control methods are synchronous and meant to be called
    from trio code between steps; after a step the harness awaits
    ``trio.testing.wait_all_tasks_blocked()`` so the woken callers run.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        auto: bool = False,
        with_replica: bool = False,
    ) -> None:
        self._clock = clock
        self._auto = auto
        self._engine = Engine(self._on_publish)
        self._replica: Engine | None = self._engine.copy(None) if with_replica else None
        self._replication: deque[_Replication] = deque()
        self._clients: dict[str, SimClient] = {}
        self._connections: dict[str, _Connection] = {}
        self._items: dict[int, _Item] = {}
        self._subscriptions: dict[str, dict[_SubConnection, None]] = {}
        self._scripts: dict[bytes, LuaScript] = {}
        self._next_id = 1
        self._work: trio.Event | None = None
        # auto mode: deliveries queued by the command being executed, made right after it
        self._auto_deliveries: list[_Delivery] = []
        self._t0: float | None = None
        self.trace: list[str] = []
        # counters
        self._commands = 0
        self._commands_failed = 0
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._unheard = 0
        self._lost = 0
        self._discarded = 0
        self._disconnects = 0
        self._failovers = 0
        self._writes_lost = 0

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
                heads.append(conn.inbound[0])
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
        self._log(item_id, "drop", item.connection.name, _message_description(item))

    def disconnect(self, connection: str) -> None:
        """Drop one connection (see the module docstring)."""
        conn = self._connections.get(connection)
        if conn is None:
            raise ValueError(f"no open connection {connection!r}")
        self._close(conn, "disconnected", fault=True)

    def disconnect_client(self, name: str) -> None:
        """Drop every connection of one client (a replica's network blip)."""
        for conn in [c for c in self._connections.values() if c.client.name == name]:
            self._close(conn, "disconnected", fault=True)

    def replicate(self, n: int = 1) -> int:
        """Apply up to ``n`` queued writes to the replica; returns how many were applied."""
        done = 0
        while done < n and self._replication:
            self._run(self._replication[0])
            done += 1
        return done

    def failover(self) -> None:
        """Promote the replica: unreplicated writes are lost, cached scripts forgotten,
        every connection dropped; a fresh replica copies the new primary."""
        if self._replica is None:
            raise RuntimeError("failover needs SimRedis(with_replica=True)")
        lost = len(self._replication)
        for entry in self._replication:
            del self._items[entry.id]
        self._replication.clear()
        promoted = self._replica
        promoted.hook = self._on_publish
        promoted.forget_scripts()
        self._engine.hook = None
        self._engine = promoted
        self._replica = promoted.copy(None)
        self._failovers += 1
        self._writes_lost += lost
        self._log(0, "failover", "primary", f"{lost} unreplicated writes lost")
        for conn in list(self._connections.values()):
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
                    head = conn.inbound[0]
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

    # -- internals: queueing ------------------------------------------------------

    def _new_id(self) -> int:
        item_id = self._next_id
        self._next_id = item_id + 1
        return item_id

    def _added(self, item: _Item) -> None:
        self._items[item.id] = item
        work = self._work
        if work is not None:
            self._work = None
            work.set()

    def _is_head(self, item: _Item) -> bool:
        if isinstance(item, _Command):
            queue: deque[Any] = item.connection.commands
        elif isinstance(item, _Delivery):
            queue = item.connection.inbound
        else:
            queue = self._replication
        return bool(queue) and queue[0] is item

    def _public(self, item: _Item) -> PendingItem:
        public = item.public
        if public is None:
            if isinstance(item, _Command):
                public = PendingItem(item.id, "command", item.connection.name, item.description)
            elif isinstance(item, _Delivery):
                public = PendingItem(
                    item.id, "delivery", item.connection.name, _message_description(item)
                )
            else:
                public = PendingItem(item.id, "replication", "replica", item.description)
            item.public = public
        return public

    async def _call(
        self,
        conn: _Connection,
        fields: list[bytes],
        shape: Callable[[Any], Any],
        description: str,
        kind: int = _PLAIN,
        channel: str = "",
    ) -> Any:
        auto = self._auto
        cmd = _Command(
            self._new_id(),
            conn,
            fields,
            shape,
            description,
            kind,
            channel,
            None if auto else trio.Event(),
        )
        conn.commands.append(cmd)
        self._added(cmd)
        if auto:
            self._execute(cmd)
            await trio.lowlevel.checkpoint()
        else:
            assert cmd.event is not None
            await cmd.event.wait()
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    # -- internals: execution -----------------------------------------------------

    def _run(self, item: _Item) -> None:
        if isinstance(item, _Command):
            self._execute(item)
        elif isinstance(item, _Delivery):
            self._deliver(item)
        else:
            self._apply_replication(item)

    def _execute(self, cmd: _Command) -> None:
        self._execute_only(cmd)
        if self._auto_deliveries:
            deliveries = self._auto_deliveries
            self._auto_deliveries = []
            for delivery in deliveries:
                self._deliver(delivery)

    def _execute_only(self, cmd: _Command) -> None:
        conn = cmd.connection
        conn.commands.popleft()
        del self._items[cmd.id]
        self._commands += 1
        if cmd.kind == _PLAIN:
            now = self._clock()
            reply = self._engine.execute(cmd.fields, now)
            if isinstance(reply, ResponseError):
                cmd.error = (
                    _NoScript(str(reply))
                    if isinstance(reply, NoScriptError)
                    else RedisCommandError(str(reply))
                )
                outcome = f"error {type(reply).__name__}: {reply}"
            else:
                cmd.result = cmd.shape(reply)
                outcome = _summary(cmd.result)
            replicated = cmd.fields[0] in _WRITES and not isinstance(reply, NoScriptError)
            if replicated and self._replica is not None:
                self._queue_replication(cmd, now)
            self._log(cmd.id, "exec", conn.name, cmd.description, outcome)
            self._complete(cmd)
            return
        assert isinstance(conn, _SubConnection)
        channel = cmd.channel
        if cmd.kind == _SUBSCRIBE:
            self._subscriptions.setdefault(channel, {})[conn] = None
            conn.server_channels.add(channel)
            self._log(cmd.id, "exec", conn.name, cmd.description)
            # subscribe() returns when this ack is delivered.
            self._enqueue_delivery(conn, channel, "", cmd)
        else:
            self._unsubscribe_server_side(conn, channel)
            self._log(cmd.id, "exec", conn.name, cmd.description)
            self._complete(cmd)

    def _complete(self, cmd: _Command) -> None:
        cmd.done = True
        event = cmd.event
        if event is not None:
            event.set()

    def _fail(self, cmd: _Command, reason: str) -> None:
        cmd.error = RedisConnectionError(f"simulated connection {cmd.connection.name} {reason}")
        self._commands_failed += 1
        self._complete(cmd)

    def _queue_replication(self, cmd: _Command, now: float) -> None:
        fields = cmd.fields
        if fields[0] == b"EVALSHA":
            script = self._scripts[fields[1]]
            fields = [b"EVAL", script.source.encode(), *fields[2:]]
        entry = _Replication(self._new_id(), fields, now, cmd.description)
        self._replication.append(entry)
        self._added(entry)

    def _apply_replication(self, entry: _Replication) -> None:
        self._replication.popleft()
        del self._items[entry.id]
        assert self._replica is not None
        reply = self._replica.execute(entry.fields, entry.at)
        outcome = (
            f"error {type(reply).__name__}: {reply}" if isinstance(reply, ResponseError) else "ok"
        )
        self._log(entry.id, "replicate", "replica", entry.description, outcome)

    def _on_publish(self, channel_raw: bytes, message_raw: bytes) -> int:
        # Runs inside the engine (its lock held): enqueue only.
        channel = channel_raw.decode()
        receivers = self._subscriptions.get(channel)
        if not receivers:
            self._unheard += 1
            return 0
        data = message_raw.decode()
        for conn in list(receivers):
            self._published += 1
            self._enqueue_delivery(conn, channel, data, None)
        return len(receivers)

    def _enqueue_delivery(
        self, conn: _SubConnection, channel: str, data: str, ack: _Command | None
    ) -> None:
        delivery = _Delivery(self._new_id(), conn, channel, data, ack)
        conn.inbound.append(delivery)
        self._added(delivery)
        if self._auto:
            self._auto_deliveries.append(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        conn = delivery.connection
        conn.inbound.popleft()
        del self._items[delivery.id]
        ack = delivery.ack
        if ack is not None:
            self._log(delivery.id, "deliver", conn.name, f"ack subscribe {delivery.channel}")
            self._complete(ack)
            return
        if delivery.channel in conn.wanted:
            self._delivered += 1
            conn.ready.append(PubSubMessage(delivery.channel, delivery.data))
            receiver = conn.receiver
            if receiver is not None:
                conn.receiver = None
                receiver.set()
            self._log(delivery.id, "deliver", conn.name, _message_description(delivery))
        else:
            self._discarded += 1
            self._log(delivery.id, "discard", conn.name, _message_description(delivery))

    def _unsubscribe_server_side(self, conn: _SubConnection, channel: str) -> None:
        conn.server_channels.discard(channel)
        receivers = self._subscriptions.get(channel)
        if receivers is not None:
            receivers.pop(conn, None)
            if not receivers:
                del self._subscriptions[channel]

    def _open(self, conn: _Connection) -> None:
        self._connections[conn.name] = conn
        self._log(0, "open", conn.name, "")

    def _close(self, conn: _Connection, reason: str, *, fault: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._connections.pop(conn.name, None)
        conn.client._forget(conn)
        if fault:
            self._disconnects += 1
        failed = [cmd.id for cmd in conn.commands]
        lost: list[int] = []
        commands = list(conn.commands)
        conn.commands.clear()
        for cmd in commands:
            del self._items[cmd.id]
        if isinstance(conn, _SubConnection):
            for channel in sorted(conn.server_channels):
                self._unsubscribe_server_side(conn, channel)
            for delivery in conn.inbound:
                del self._items[delivery.id]
                lost.append(delivery.id)
                if delivery.ack is not None:
                    commands.append(delivery.ack)
                    failed.append(delivery.ack.id)
                else:
                    self._lost += 1
            conn.inbound.clear()
            receiver = conn.receiver
            if receiver is not None:
                conn.receiver = None
                receiver.set()
        self._log(0, "close", conn.name, f"{reason}; failed {failed}, lost {lost}")
        for cmd in commands:
            self._fail(cmd, reason)

    def _log(self, item_id: int, verb: str, connection: str, text: str, outcome: str = "") -> None:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        line = f"{now - self._t0:.3f}{f' #{item_id}' if item_id else ''} {verb} {connection}"
        if text:
            line = f"{line} {text}"
        if outcome:
            line = f"{line} -> {outcome}"
        self.trace.append(line)


class _NoScript(Exception):
    """Internal: EVALSHA answered NOSCRIPT; run_script retries with EVAL."""


@final
class SimClient:
    """One replica's Redis client over the simulation; implements
    :class:`~impl.redis.RedisLike` with the coredis adapter's reply shapes."""

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


@final
class SimSubscriber:
    """One simulated pub/sub connection; implements :class:`~impl.redis.Subscriber`
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


# -- reply shapes (coredis with decode_responses=True) --------------------------------


def _item_id(item: _Item) -> int:
    return item.id


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {_decode(k): _decode(v) for k, v in value.items()}
    if isinstance(value, ResponseError):
        return RedisCommandError(str(value))
    return value


def _int(value: Any) -> int:
    return int(value)


def _positive(value: Any) -> bool:
    return int(value) > 0


def _string_set(value: Any) -> set[str]:
    return {v.decode() for v in value}


def _entries(value: Any) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for entry_id, flat in value:
        it = iter(flat)
        out.append(
            (entry_id.decode(), {f.decode(): v.decode() for f, v in zip(it, it, strict=True)})
        )
    return out


# -- descriptions ---------------------------------------------------------------------------


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _describe(head: str, parts: Sequence[str]) -> str:
    shown = [_short(p, _ARG_CHARS) if p else "''" for p in parts]
    return _short(" ".join([head, *shown]), _DESCRIPTION_CHARS)


def _message_description(delivery: _Delivery) -> str:
    if delivery.ack is not None:
        return f"ack subscribe {delivery.channel}"
    return f"message {delivery.channel} {_short(delivery.data, 120)}"


def _summary(value: Any) -> str:
    if value is None or isinstance(value, int | bool):
        return repr(value)
    if isinstance(value, str):
        return repr(_short(value, _ARG_CHARS))
    if isinstance(value, list):
        if len(value) <= 4 and all(v is None or isinstance(v, int | str) for v in value):
            return "[" + ", ".join(_summary(v) for v in value) + "]"
        return f"<{len(value)} entries>"
    if isinstance(value, dict):
        return f"<hash of {len(value)} fields>"
    if isinstance(value, set):
        return f"<set of {len(value)}>"
    return type(value).__name__
