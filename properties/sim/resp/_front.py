"""The RESP front: the simulated Redis on loopback TCP ports, for replicas in other processes.

A foreign replica (a Node process with ioredis, or streamcheck's own agent with coredis)
connects to a port of the front as to Redis. Every TCP connection becomes one connection of
the simulated Redis (:class:`~streamcheck.properties.sim.SimRedis`), named
``<replica>/c<n>`` in the order it was accepted, so every command it sends is a pending
step, every SUBSCRIBE acknowledgement and every pub/sub message a pending delivery, and the
harness releases them in the order the state machine draws. Faults are the simulation's:
:meth:`SimRedis.drop` loses a message, :meth:`SimRedis.disconnect` cuts the connection (the
front then closes the socket).

What goes out on one socket keeps Redis's order: Redis writes a connection's replies and
pushes into one output buffer in the order it produced them. So each connection has an
outbox in server order: a command's reply is placed when the command executes, a delivery's
frame is reserved when it is queued (when the PUBLISH or the SUBSCRIBE executed) and filled
when it is delivered (or removed when it is dropped); the socket gets the filled prefix. A
reply never overtakes a message Redis produced before it, and a message is never written
before the step that delivers it.

Connection set-up is answered by the front at once, not as a step (it touches no data):
``HELLO`` (RESP2 or RESP3), ``CLIENT ...``, ``SELECT 0``, ``AUTH``, ``PING``, ``ECHO``,
``INFO`` (the engine's run id, ``loading:0``), ``COMMAND``, ``READONLY``, ``QUIT``. Such a
reply still waits behind the replies of commands queued before it on the same connection.
Blocking forms (``XREAD BLOCK``, ``BLPOP``) are refused: the engine runs each command at
once, on the harness's thread.

The front learns what the simulated Redis did through the connection objects it gives it:
an inbound FIFO that reports each queued and removed delivery, a ready list that reports
each delivered message, and a completion that reports each executed command (see
:class:`_Inbound`, :class:`_Ready`, :class:`_Completion`). It uses
:mod:`streamcheck.properties.sim`'s internal item classes and changes none of them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import trio
from redis.exceptions import ResponseError

from streamcheck.impl.redis import PubSubMessage, RedisConnectionError
from streamcheck.properties.sim._client import SimClient
from streamcheck.properties.sim._items import (
    _PLAIN,
    _SUBSCRIBE,
    _UNSUBSCRIBE,
    _Command,
    _Delivery,
    _NoScript,
    _SubConnection,
)
from streamcheck.properties.sim._redis import SimRedis
from streamcheck.properties.sim._replies import _describe, _short
from streamcheck.properties.sim.resp._codec import (
    RequestParser,
    RespProtocolError,
    encode,
    error_line,
    push,
    simple,
)

__all__ = ["FrontStatistics", "RespFront"]

_LOCAL: Final = frozenset(
    b"HELLO CLIENT SELECT AUTH PING ECHO INFO COMMAND READONLY READWRITE QUIT".split()
)
_REFUSED: Final = frozenset(b"BLPOP BRPOP BLMOVE BZPOPMIN BZPOPMAX WAIT MONITOR".split())
_PATTERN: Final = frozenset(b"PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE SUNSUBSCRIBE".split())


def _identity(value: Any) -> Any:
    return value


@dataclass(slots=True)
class FrontStatistics:
    connections: int = 0
    commands_received: int = 0
    answered_locally: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0


class _Slot:
    """One frame of a connection's outbox: ready bytes, or a delivery not yet made."""

    __slots__ = ("ack_frame", "delivery", "frame", "removed")

    def __init__(
        self, frame: bytes | None, delivery: _Delivery | None = None, ack_frame: bytes = b""
    ) -> None:
        self.frame = frame
        self.delivery = delivery
        #: A subscribe acknowledgement's frame, known when it is queued (with the count
        #: of channels then), released when it is delivered.
        self.ack_frame = ack_frame
        #: The simulated Redis took the delivery off its FIFO; a message frame then
        #: follows at once if it was delivered, none if it was dropped.
        self.removed = False


class _Inbound(deque[_Delivery]):
    """A subscriber connection's inbound FIFO that tells the front what was queued and
    what was taken off (delivered or dropped)."""

    def __init__(self, owner: FrontConnection) -> None:
        super().__init__()
        self._owner = owner

    def append(self, delivery: _Delivery) -> None:
        super().append(delivery)
        self._owner.queued(delivery)

    def remove(self, delivery: _Delivery) -> None:
        super().remove(delivery)
        self._owner.taken(delivery)


class _Ready:
    """Stands in for a subscriber's list of delivered messages: each goes to the socket."""

    def __init__(self, owner: FrontConnection) -> None:
        self._owner = owner

    def append(self, message: PubSubMessage) -> None:
        self._owner.delivered(message)

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0


class _Completion:
    """Stands in for the ``trio.Event`` a caller of the simulated Redis waits on: the
    simulation sets it when the command executed (or failed with its connection)."""

    __slots__ = ("_callback", "_command")

    def __init__(self, callback: Callable[[_Command], None]) -> None:
        self._callback = callback
        self._command: _Command | None = None

    def set(self) -> None:
        assert self._command is not None
        self._callback(self._command)


class _Wakeup:
    """The subscriber connection's receiver: set when a message was delivered or the
    connection closed; it re-arms itself."""

    def __init__(self, owner: FrontConnection) -> None:
        self._owner = owner

    def set(self) -> None:
        owner = self._owner
        sim_conn = owner.sim_connection
        assert sim_conn is not None
        if sim_conn.closed:
            owner.cut()
        else:
            sim_conn.receiver = cast(trio.Event, self)


@dataclass(eq=False)
class FrontConnection:
    """One client TCP connection and its simulated-Redis connection."""

    front: RespFront
    #: The replica whose port it connected to.
    name: str
    stream: trio.SocketStream
    #: Opened with the first command that is a step (see RespFront._simulated).
    sim_connection: _SubConnection | None = None
    protocol: int = 2
    outbox: deque[_Slot] = field(default_factory=deque)
    #: Replies answered by the front that wait for a command queued before them.
    after: dict[int, list[bytes]] = field(default_factory=dict)
    #: Channels subscribed or being subscribed (for a bare UNSUBSCRIBE).
    channels: set[str] = field(default_factory=set)
    wake: trio.Event = field(default_factory=trio.Event)
    closing: bool = False
    #: The message slot whose delivery was just taken off the FIFO: the simulation
    #: hands the message over right after (delivered) or not at all (dropped).
    _taken: _Slot | None = None

    # -- what the simulated Redis did ------------------------------------------------

    def queued(self, delivery: _Delivery) -> None:
        if delivery.ack is not None:
            count = len(self._sim().server_channels)
            frame = push([b"subscribe", delivery.channel.encode(), count], self.protocol)
            self.outbox.append(_Slot(None, delivery, frame))
            for reply in self.after.pop(delivery.ack.id, []):
                self.outbox.append(_Slot(reply))
        else:
            self.outbox.append(_Slot(None, delivery))

    def taken(self, delivery: _Delivery) -> None:
        for slot in self.outbox:
            if slot.delivery is delivery:
                slot.removed = True
                if delivery.ack is not None:
                    slot.frame = slot.ack_frame
                else:
                    self._taken = slot
                break
        self.poke()

    def delivered(self, message: PubSubMessage) -> None:
        frame = push([b"message", message.channel.encode(), message.data.encode()], self.protocol)
        slot, self._taken = self._taken, None
        if slot is not None:
            slot.frame = frame
        self.poke()

    def completed(self, command: _Command) -> None:
        if isinstance(command.error, RedisConnectionError):
            self.cut()
            return
        if command.kind == _PLAIN:
            error = command.error
            if isinstance(error, _NoScript):
                frame = error_line(f"NOSCRIPT {error}")
            elif error is not None:
                frame = error_line(ResponseError(str(error)))
            else:
                frame = encode(command.result, self.protocol)
            self.outbox.append(_Slot(frame))
        elif command.kind == _UNSUBSCRIBE:
            channel = command.channel.encode() if command.channel else None
            count = len(self._sim().server_channels)
            self.outbox.append(_Slot(push([b"unsubscribe", channel, count], self.protocol)))
        for reply in self.after.pop(command.id, []):
            self.outbox.append(_Slot(reply))
        self.poke()

    def _sim(self) -> _SubConnection:
        assert self.sim_connection is not None
        return self.sim_connection

    def cut(self) -> None:
        self.closing = True
        self.poke()

    def poke(self) -> None:
        self.wake.set()

    # -- the socket ---------------------------------------------------------------------

    def ready_frames(self) -> bytes:
        """The filled prefix of the outbox (dropped deliveries skipped)."""
        out: list[bytes] = []
        outbox = self.outbox
        while outbox:
            slot = outbox[0]
            if slot.frame is not None:
                out.append(slot.frame)
            elif not slot.removed:
                break
            outbox.popleft()
        return b"".join(out)

    def answer_locally(self, reply: bytes) -> None:
        """A reply the front makes: after every reply due before it."""
        pending = self.sim_connection.commands if self.sim_connection is not None else ()
        if pending:
            self.after.setdefault(pending[-1].id, []).append(reply)
        else:
            self.outbox.append(_Slot(reply))
            self.poke()


class RespFront:
    """Listeners for the replicas of one simulated world; see the module docstring.

    ``on_activity`` is called whenever bytes arrive from or leave for a client: the
    harness's quiet window (a decision is complete when nothing moved for a while) is
    measured from the last call.
    """

    def __init__(self, sim: SimRedis, on_activity: Callable[[], None]) -> None:
        self.sim = sim
        self._on_activity = on_activity
        self._clients: dict[str, SimClient] = {}
        self._opened: dict[str, int] = {}
        self.connections: list[FrontConnection] = []
        self.statistics = FrontStatistics()
        #: Bytes written and not yet flushed to a socket (the quiet window waits for 0).
        self.writing = 0

    async def listen(self, nursery: trio.Nursery, replica: str) -> int:
        """Serve ``replica``'s connections on a fresh loopback port; return the port."""
        self._clients[replica] = self.sim.client(replica, pool_size=1)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port: int = listeners[0].socket.getsockname()[1]
        nursery.start_soon(self._serve, listeners, replica)
        return port

    async def _serve(self, listeners: list[trio.SocketListener], replica: str) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, replica, nursery)

    async def _accept(
        self, listener: trio.SocketListener, replica: str, nursery: trio.Nursery
    ) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._connection, stream, replica)

    async def _connection(self, stream: trio.SocketStream, replica: str) -> None:
        self.statistics.connections += 1
        conn = FrontConnection(self, replica, stream)
        self.connections.append(conn)
        self._on_activity()
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(self._write, conn, nursery.cancel_scope)
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, RespProtocolError
            ):
                await self._read(conn)
            nursery.cancel_scope.cancel()
        sim_conn = conn.sim_connection
        if sim_conn is not None and not sim_conn.closed:
            self.sim._close(sim_conn, "closed by the client", fault=False)
        self._on_activity()

    def _simulated(self, conn: FrontConnection, subscriber: bool) -> _SubConnection:
        """The connection's simulated twin, opened with its first command that is a
        step. Its name says its role (``s`` if that command is a SUBSCRIBE, else ``c``)
        and counts per replica and role, so names do not depend on which of two
        connections opened at once was accepted first."""
        sim_conn = conn.sim_connection
        if sim_conn is not None:
            return sim_conn
        role = "s" if subscriber else "c"
        key = f"{conn.name}/{role}"
        number = self._opened.get(key, 0)
        self._opened[key] = number + 1
        sim_conn = _SubConnection(f"{conn.name}/{role}{number}", self._clients[conn.name])
        sim_conn.inbound = _Inbound(conn)
        sim_conn.ready = cast(deque[PubSubMessage], _Ready(conn))
        sim_conn.receiver = cast(trio.Event, _Wakeup(conn))
        conn.sim_connection = sim_conn
        self.sim._open(sim_conn)
        return sim_conn

    async def _read(self, conn: FrontConnection) -> None:
        parser = RequestParser()
        while not conn.closing:
            data = await conn.stream.receive_some(65536)
            self._on_activity()
            if not data:
                return
            self.statistics.bytes_received += len(data)
            for fields in parser.feed(data):
                self.statistics.commands_received += 1
                self._command(conn, fields)

    async def _write(self, conn: FrontConnection, scope: trio.CancelScope) -> None:
        while True:
            await conn.wake.wait()
            conn.wake = trio.Event()
            frames = conn.ready_frames()
            if frames:
                self.writing += 1
                try:
                    await conn.stream.send_all(frames)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    scope.cancel()
                    return
                finally:
                    self.writing -= 1
                self.statistics.bytes_sent += len(frames)
                self._on_activity()
            if conn.closing:
                # Redis closed it (a cut decision): what was written before stays written.
                scope.cancel()
                return

    # -- commands -------------------------------------------------------------------------

    def _command(self, conn: FrontConnection, fields: list[bytes]) -> None:
        name = fields[0].upper()
        if name in _LOCAL:
            self.statistics.answered_locally += 1
            conn.answer_locally(self._local(conn, name, fields[1:]))
        elif name == b"SUBSCRIBE":
            for raw in fields[1:]:
                channel = raw.decode()
                conn.channels.add(channel)
                # Delivered messages go to the client whatever it wants now (as Redis
                # does); the client discards what it no longer wants.
                self._simulated(conn, subscriber=True).wanted.add(channel)
                self._queue(conn, [], f"SUBSCRIBE {channel}", _SUBSCRIBE, channel)
        elif name == b"UNSUBSCRIBE":
            channels = [raw.decode() for raw in fields[1:]] or sorted(conn.channels)
            if not channels:
                conn.answer_locally(push([b"unsubscribe", None, 0], conn.protocol))
            for channel in channels:
                conn.channels.discard(channel)
                self._queue(conn, [], f"UNSUBSCRIBE {channel}", _UNSUBSCRIBE, channel)
        elif name in _PATTERN or name in _REFUSED or (name == b"XREAD" and _blocks(fields)):
            conn.answer_locally(
                error_line(f"ERR the simulated Redis does not serve {name.decode()}")
            )
        else:
            args = fields[1:]
            if name == b"EVAL" and args:
                # A script by its SHA1, as EVALSHA names it: the trace stays one line.
                args = [hashlib.sha1(args[0]).hexdigest().encode(), *args[1:]]
            parts = [_short(f.decode(errors="replace"), 48) for f in args]
            self._queue(conn, [name, *fields[1:]], _describe(name.decode(), parts), _PLAIN, "")

    def _queue(
        self, conn: FrontConnection, fields: list[bytes], description: str, kind: int, channel: str
    ) -> None:
        completion = _Completion(conn.completed)
        sim = self.sim
        sim_conn = self._simulated(conn, subscriber=kind == _SUBSCRIBE)
        command = _Command(
            sim._new_id(),
            sim_conn,
            fields,
            _identity,
            description,
            kind,
            channel,
            cast(trio.Event, completion),
        )
        completion._command = command
        sim_conn.commands.append(command)
        sim._added(command)

    def _local(self, conn: FrontConnection, name: bytes, args: list[bytes]) -> bytes:
        if name == b"HELLO":
            if args:
                try:
                    version = int(args[0])
                except ValueError:
                    return error_line("ERR Protocol version is not an integer or out of range")
                if version not in (2, 3):
                    return error_line("NOPROTO unsupported protocol version")
                conn.protocol = version
            info: dict[bytes, object] = {
                b"server": b"redis",
                b"version": b"7.0.0",
                b"proto": conn.protocol,
                b"id": self.connections.index(conn) + 1,
                b"mode": b"standalone",
                b"role": b"master",
                b"modules": [],
            }
            return encode(info, conn.protocol)
        if name == b"CLIENT":
            sub = args[0].upper() if args else b""
            if sub == b"ID":
                return encode(self.connections.index(conn) + 1, conn.protocol)
            if sub == b"GETNAME":
                return encode(None, conn.protocol)
            return simple("OK")
        if name == b"PING":
            if conn.channels and conn.protocol == 2:
                return push([b"pong", args[0] if args else b""], 2)
            return encode(args[0], conn.protocol) if args else simple("PONG")
        if name == b"ECHO":
            return encode(args[0] if args else b"", conn.protocol)
        if name == b"INFO":
            run_id = self.sim._engine.run_id
            text = (
                "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
                f"run_id:{run_id}\r\n# Persistence\r\nloading:0\r\n"
            )
            return encode(text.encode(), conn.protocol, top=False)
        if name == b"COMMAND":
            return encode([], conn.protocol)
        if name == b"QUIT":
            conn.cut()
            return simple("OK")
        if name == b"SELECT" and args and args[0] != b"0":
            return error_line("ERR the simulated Redis has database 0 only")
        return simple("OK")

    def close_all(self) -> None:
        for conn in self.connections:
            conn.cut()


def _blocks(fields: list[bytes]) -> bool:
    return any(f.upper() == b"BLOCK" for f in fields[1:])
