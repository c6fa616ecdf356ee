"""The step machinery of the simulated Redis: queueing items, executing commands on the
engine, delivering messages, replicating, opening and closing connections, and the trace
(see :mod:`streamcheck.properties.sim._redis`; :class:`~streamcheck.properties.sim.SimRedis`
adds the control API).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio
from redis.exceptions import NoScriptError, ResponseError

from streamcheck.impl.redis import LuaScript, PubSubMessage, RedisConnectionError
from streamcheck.properties.sim._engine import Engine
from streamcheck.properties.sim._items import (
    _PLAIN,
    _SUBSCRIBE,
    PendingItem,
    RedisCommandError,
    _Command,
    _Connection,
    _Delivery,
    _Item,
    _NoScript,
    _Replication,
    _SubConnection,
)
from streamcheck.properties.sim._replies import _message_description, _summary
from streamcheck.properties.sim._trace import (
    CommandExecuted,
    ConnectionClosed,
    ConnectionOpened,
    LogRead,
    MessageDelivered,
    Publication,
    SubscribeAcknowledged,
    SubscribeExecuted,
    TraceRecord,
    UnsubscribeExecuted,
    WriteReplicated,
)

if TYPE_CHECKING:
    from streamcheck.properties.sim._client import SimClient

_WRITES: Final = frozenset({b"EVALSHA", b"EVAL", b"DEL", b"EXPIRE", b"SADD", b"SREM"})


class _SimCore:
    """The state and internals of :class:`~streamcheck.properties.sim.SimRedis`."""

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
        #: Writes the replica has received but not yet replayed (see _apply_replication).
        self._replicated: list[tuple[_Replication, str]] = []
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
        #: The trace records built so far (see :attr:`records`).
        self._records: list[TraceRecord] = []
        #: Records not built yet: each is built on the first read of :attr:`records`, so
        #: a step costs a partial and a tuple, not a frozen dataclass (a few percent of
        #: the simulation's time), and a run nobody reads never pays for it.
        self._unbuilt: list[tuple[Callable[..., TraceRecord], float, int | None]] = []
        self._position: Callable[[], int] | None = None
        #: The PUBLISHes of the command being executed (see _on_publish).
        self._publishing: list[Publication] = []
        #: Redis Cluster's pub/sub (see SimRedis.relay_pubsub).
        self._relayed = False
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
            return item in item.connection.lane_heads()
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
        cmd.sent = self._clock()
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
            self._publishing = []
            reply = self._engine.execute(cmd.fields, now)
            error: str | None = None
            if isinstance(reply, ResponseError):
                cmd.error = (
                    _NoScript(str(reply))
                    if isinstance(reply, NoScriptError)
                    else RedisCommandError(str(reply))
                )
                error = f"{type(reply).__name__}: {reply}"
            else:
                cmd.result = cmd.shape(reply)
            replicated = cmd.fields[0] in _WRITES and not isinstance(reply, NoScriptError)
            if replicated and self._replica is not None:
                self._queue_replication(cmd, now)
            self._executed(cmd, error)
            self._complete(cmd)
            return
        assert isinstance(conn, _SubConnection)
        channel = cmd.channel
        subscribing = cmd.kind == _SUBSCRIBE
        if subscribing:
            self._subscriptions.setdefault(channel, {})[conn] = None
            conn.server_channels.add(channel)
        else:
            self._unsubscribe_server_side(conn, channel)
        self._record(
            partial(
                SubscribeExecuted if subscribing else UnsubscribeExecuted,
                item=cmd.id,
                connection=conn.name,
                client=conn.client.name,
                channel=channel,
            )
        )
        if subscribing:
            # subscribe() returns when this ack is delivered.
            self._enqueue_delivery(conn, channel, "", cmd)
        else:
            self._complete(cmd)

    def _executed(self, cmd: _Command, error: str | None) -> None:
        """Record a plain command Redis just ran."""
        conn = cmd.connection
        fields = cmd.fields
        name = fields[0].decode()
        if name == "XRANGE" and error is None:
            count = int(fields[5]) if len(fields) > 5 else None
            self._record(
                partial(
                    LogRead,
                    item=cmd.id,
                    connection=conn.name,
                    client=conn.client.name,
                    key=fields[1].decode(),
                    start=fields[2].decode(),
                    end=fields[3].decode(),
                    count=count,
                    ids=tuple(entry_id for entry_id, _fields in cmd.result),
                    sent=self._trace_time(cmd.sent),
                )
            )
            return
        published = tuple(self._publishing)
        self._publishing = []
        self._record(
            partial(
                CommandExecuted,
                item=cmd.id,
                connection=conn.name,
                client=conn.client.name,
                command=name,
                script=self._script_name(fields),
                description=cmd.description,
                reply="" if error is not None else _summary(cmd.result),
                error=error,
                published=published,
            )
        )

    def _script_name(self, fields: list[bytes]) -> str | None:
        if fields[0] == b"EVALSHA":
            script = self._scripts.get(fields[1])
        elif fields[0] == b"EVAL":
            script = self._scripts.get(hashlib.sha1(fields[1]).hexdigest().encode())
        else:
            return None
        return None if script is None else script.name

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
            script = self._scripts.get(fields[1])
            source = (
                self._engine.script_source(fields[1]) if script is None else script.source.encode()
            )
            fields = [b"EVAL", source, *fields[2:]]
        entry = _Replication(self._new_id(), fields, now, cmd.description)
        self._replication.append(entry)
        self._added(entry)

    def _apply_replication(self, entry: _Replication) -> None:
        # The replica is read only when it is promoted (or peeked at), so the write is
        # replayed then: most runs never fail over, and replaying every script at once
        # cost a tenth of the simulation's time. Replays use the time each write was
        # made, so the replica ends up exactly as an eager replay would leave it.
        self._replication.popleft()
        del self._items[entry.id]
        assert self._replica is not None
        self._replicated.append((entry, self._engine.run_id))
        self._record(partial(WriteReplicated, item=entry.id, description=entry.description))

    def _catch_up_replica(self) -> None:
        assert self._replica is not None
        for entry, primary_run_id in self._replicated:
            # A write that failed on the primary fails the same way here: nothing to do.
            self._replica.execute(entry.fields, entry.at, replicating=primary_run_id)
        self._replicated.clear()

    def _on_publish(self, channel_raw: bytes, message_raw: bytes) -> int:
        # Runs inside the engine (its lock held): enqueue only.
        channel = channel_raw.decode()
        receivers = self._subscriptions.get(channel)
        data = message_raw.decode()
        if not receivers:
            self._unheard += 1
            self._publishing.append(Publication(channel, data, ()))
            return 0
        for conn in list(receivers):
            self._published += 1
            self._enqueue_delivery(conn, channel, data, None)
        self._publishing.append(Publication(channel, data, tuple(c.name for c in receivers)))
        return len(receivers)

    def _enqueue_delivery(
        self, conn: _SubConnection, channel: str, data: str, ack: _Command | None
    ) -> None:
        # Acks come from the node the subscriber is connected to; messages, relayed,
        # from the primary that published them.
        lane = f"from server {self._engine.number}" if self._relayed and ack is None else ""
        delivery = _Delivery(self._new_id(), conn, channel, data, ack, lane)
        conn.inbound.append(delivery)
        self._added(delivery)
        if self._auto:
            self._auto_deliveries.append(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        conn = delivery.connection
        conn.inbound.remove(delivery)
        del self._items[delivery.id]
        ack = delivery.ack
        if ack is not None:
            self._record(
                partial(
                    SubscribeAcknowledged,
                    item=delivery.id,
                    connection=conn.name,
                    client=conn.client.name,
                    channel=delivery.channel,
                )
            )
            self._complete(ack)
            return
        wanted = delivery.channel in conn.wanted
        self._record(
            partial(
                MessageDelivered,
                item=delivery.id,
                connection=conn.name,
                client=conn.client.name,
                channel=delivery.channel,
                message=delivery.data,
                discarded=not wanted,
            )
        )
        if wanted:
            self._delivered += 1
            conn.ready.append(PubSubMessage(delivery.channel, delivery.data))
            receiver = conn.receiver
            if receiver is not None:
                conn.receiver = None
                receiver.set()
        else:
            self._discarded += 1

    def _unsubscribe_server_side(self, conn: _SubConnection, channel: str) -> None:
        conn.server_channels.discard(channel)
        receivers = self._subscriptions.get(channel)
        if receivers is not None:
            receivers.pop(conn, None)
            if not receivers:
                del self._subscriptions[channel]

    def _open(self, conn: _Connection) -> None:
        self._connections[conn.name] = conn
        self._record(
            partial(
                ConnectionOpened,
                connection=conn.name,
                client=conn.client.name,
                pubsub=isinstance(conn, _SubConnection),
            )
        )

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
        self._record(
            partial(
                ConnectionClosed,
                connection=conn.name,
                client=conn.client.name,
                reason=reason,
                fault=fault,
                failed=tuple(failed),
                lost=tuple(lost),
            )
        )
        for cmd in commands:
            self._fail(cmd, reason)

    @property
    def trace(self) -> list[str]:
        """:attr:`records` as human-readable lines, one per step."""
        return [record.line() for record in self.records]

    def set_position_source(self, position: Callable[[], int] | None) -> None:
        """From now on every trace record carries ``position()`` as made when it was
        recorded (the simulation passes its history's length)."""
        self._position = position

    @property
    def records(self) -> list[TraceRecord]:
        """Every step made, in order, as typed records (see :mod:`._trace`)."""
        if self._unbuilt:
            self._records.extend(
                make(time=time, position=position) for make, time, position in self._unbuilt
            )
            self._unbuilt.clear()
        return self._records

    def record_count(self) -> int:
        """How many trace records exist (without building them): the index in
        :attr:`records` the next one gets."""
        return len(self._records) + len(self._unbuilt)

    def _trace_time(self, at: float | None) -> float | None:
        """Simulated time ``at`` as a trace record states times (see :meth:`_record`)."""
        return None if at is None or self._t0 is None else round(at - self._t0, 6)

    def _record(self, make: Callable[..., TraceRecord]) -> None:
        """Record a step: ``make`` builds its record when it is first read, given the
        time (seconds since the first record) and position taken now."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        position = self._position
        self._unbuilt.append(
            (make, round(now - self._t0, 6), None if position is None else position())
        )
