"""A trio TCP proxy that makes the network between a replica and Redis misbehave on cue.

The problem: the real-Redis tier needs the link between each replica and Redis to turn
slow, die, partition or back up while a stream runs, and a well-kept tool such as
toxiproxy cannot be installed here. This is the minimal one: loopback only, one listening
port, every accepted connection forwarded to one upstream, faults switched at runtime.

Example::

    async with open_fault_proxy(redis_port) as proxy:
        async with open_coredis(f"redis://127.0.0.1:{proxy.port}") as redis:
            proxy.inject(Latency(delay_s=0.02, jitter_s=0.01))
            proxy.inject(Blackhole(duration_s=0.5))
            ...
            proxy.heal()

What each fault models (each is a frozen value; :class:`FaultKind` names its kind):

* :class:`Latency`, propagation delay: a chunk read in a direction leaves the proxy at
  ``read time + delay_s + U(0, jitter_s)``, U drawn from the injected ``random.Random``.
  ``delay_s`` is therefore a floor. Each direction of a connection has one FIFO queue and
  one writer, so a chunk with a smaller draw waits for the one before it: bytes keep
  their order, as on a TCP connection. It applies to bytes read after the change.
* :class:`Cut`, the connections die: every open connection is closed on both sides at
  once (FIN, or RST with ``reset=True``) and the bytes the proxy held are dropped. For
  ``refuse_for_s`` afterwards new connections are reset as soon as they are accepted: a
  proxy cannot refuse a SYN while it listens, so the client's connect, or else its first
  read, fails with ECONNRESET rather than ECONNREFUSED.
* :class:`Blackhole`, a transient partition for ``duration_s``: nothing moves in either
  direction. Bytes, EOFs and a side's reset are held, not dropped, and flow when it ends,
  as TCP retransmission delivers them after a short partition; meanwhile clients see
  silence, so their own timeouts fire. New connections are accepted but not connected
  upstream until it ends. A longer blackhole injected during one extends it.
* :class:`SlowReader`, a slow consumer: the proxy reads from upstream at most
  ``bytes_per_s`` per connection, so a reply backs up in the kernel's socket buffers and
  then in Redis's client output buffer (where ``client-output-buffer-limit`` applies).
  It reads 50 ms of allowance at a time, so the rate holds over 50 ms and longer.

The proxy holds at most :data:`MAX_HELD_BYTES` (plus one read) per direction of a
connection and stops reading beyond that, or during a blackhole, so a backlog waits in
the kernel and then in the sender, never in unbounded proxy memory.

Call :meth:`FaultProxy.inject` and :meth:`FaultProxy.heal` from the trio run that runs
the proxy. Deadlines use trio's clock, so a ``MockClock`` drives them too.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, assert_never, final

import trio

LOOPBACK = "127.0.0.1"
# Most bytes one read takes from a socket (trio's own default for receive_some).
READ_SIZE = 64 * 1024
# The proxy stops reading a direction of a connection while it holds this much (read, not
# yet written), so a backlog waits in the kernel and then in the sender, as behind a TCP
# window. Under latency one connection therefore carries at most 1 MiB per delay.
MAX_HELD_BYTES = 1024 * 1024
# A slow reader reads 50 ms of its allowance at a time: trio's timers are about 1 ms
# coarse, so smaller steps would come out slower than the rate, and a heal still takes
# effect within 50 ms.
SLOW_READER_QUANTUM_S = 0.05

_Chunk = tuple[float, bytes]  # (when it may leave the proxy, the bytes)


class Direction(enum.Enum):
    UPSTREAM = "upstream"  # client → Redis
    DOWNSTREAM = "downstream"  # Redis → client


class FaultKind(enum.Enum):
    LATENCY = "latency"
    CUT = "cut"
    BLACKHOLE = "blackhole"
    SLOW_READER = "slow_reader"


def _check(name: str, value: float, *, positive: bool = False) -> None:
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Hold each chunk ``delay_s + U(0, jitter_s)``; ``direction=None`` means both."""

    kind: ClassVar[FaultKind] = FaultKind.LATENCY
    delay_s: float
    jitter_s: float = 0.0
    direction: Direction | None = None

    def __post_init__(self) -> None:
        _check("delay_s", self.delay_s)
        _check("jitter_s", self.jitter_s)

    def draw(self, rng: random.Random) -> float:
        """One chunk's delay; consumes one draw from ``rng`` only when there is jitter."""
        return self.delay_s + (rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    """Close every open connection now; reset new ones for ``refuse_for_s``."""

    kind: ClassVar[FaultKind] = FaultKind.CUT
    refuse_for_s: float = 0.0
    reset: bool = False

    def __post_init__(self) -> None:
        _check("refuse_for_s", self.refuse_for_s)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Blackhole:
    """Forward nothing, either way, for ``duration_s``; held bytes flow afterwards."""

    kind: ClassVar[FaultKind] = FaultKind.BLACKHOLE
    duration_s: float

    def __post_init__(self) -> None:
        _check("duration_s", self.duration_s, positive=True)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SlowReader:
    """Read from upstream at most ``bytes_per_s`` per connection."""

    kind: ClassVar[FaultKind] = FaultKind.SLOW_READER
    bytes_per_s: int

    def __post_init__(self) -> None:
        _check("bytes_per_s", self.bytes_per_s, positive=True)


Fault = Latency | Cut | Blackhole | SlowReader


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStatistics:
    connections_accepted: int  # refused ones included
    connections_refused: int
    connections_open: int
    bytes_upstream: int  # forwarded client → Redis
    bytes_downstream: int  # forwarded Redis → client
    faults_injected: Mapping[FaultKind, int]


@final
class _Faults:
    """The switchable state, and waits that wake when it changes (a heal ends a blackhole
    early, so nobody may sleep to a deadline that no longer exists)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.latency: dict[Direction, Latency | None] = dict.fromkeys(Direction)
        self.bytes_per_s: int | None = None
        self.blackhole_until = -math.inf
        self.refuse_until = -math.inf
        self._changed = trio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def release_time(self, direction: Direction) -> float:
        latency = self.latency[direction]
        delay = latency.draw(self.rng) if latency is not None else 0.0
        return trio.current_time() + delay

    def read_size(self, direction: Direction) -> int:
        if direction is Direction.UPSTREAM or self.bytes_per_s is None:
            return READ_SIZE
        return max(1, min(MAX_HELD_BYTES, int(self.bytes_per_s * SLOW_READER_QUANTUM_S)))

    async def until_changed_or(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._changed.wait()

    async def wait_not_blackholed(self) -> None:
        while self.blackhole_until > trio.current_time():
            await self.until_changed_or(self.blackhole_until)

    async def pace(self, direction: Direction, size: int, paced_until: float) -> float:
        """Hold a read of ``size`` bytes until the slow reader's link could have carried it;
        returns when the link is free again (``paced_until`` for the next read)."""
        rate = self.bytes_per_s
        if direction is Direction.UPSTREAM or rate is None:
            return paced_until
        # The bytes arrive when their last byte would have, so size bytes take size/rate.
        paced_until = max(paced_until, trio.current_time()) + size / rate
        while trio.current_time() < paced_until and self.bytes_per_s == rate:
            await self.until_changed_or(paced_until)
        return paced_until


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, such as "localhost": we resolve nothing, so refuse it
        return False


def _close_now(stream: trio.SocketStream, *, reset: bool) -> None:
    """Close without awaiting, so it works from sync code and in cancelled scopes; blocked
    readers and writers of the stream wake with ClosedResourceError."""
    sock = stream.socket
    if reset and sock.fileno() != -1:
        # Linger 0 turns close() into an RST: the peer's next read fails with ECONNRESET.
        # A socket the kernel already tore down may refuse the option; close it anyway.
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@final
class _Link:
    """One direction of a pair: chunks read from ``src``, in order, not yet sent to ``dst``."""

    def __init__(
        self, direction: Direction, src: trio.SocketStream, dst: trio.SocketStream
    ) -> None:
        self.direction, self.src, self.dst = direction, src, dst
        # Unbounded in chunks because held_bytes bounds it in bytes.
        self.send, self.receive = trio.open_memory_channel[_Chunk](math.inf)
        self.held_bytes = 0
        self._drained = trio.Event()

    async def wait_for_room(self) -> None:
        while self.held_bytes >= MAX_HELD_BYTES:
            await self._drained.wait()

    def written(self, size: int) -> None:
        self.held_bytes -= size
        self._drained.set()
        self._drained = trio.Event()


@final
class _Pair:
    """One accepted client connection and its upstream connection, in one cancel scope."""

    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.upstream: trio.SocketStream | None = None
        self.scope = trio.CancelScope()

    def close_now(self, *, reset: bool) -> None:
        for stream in (self.client, self.upstream):
            if stream is not None:
                _close_now(stream, reset=reset)
        self.scope.cancel()


@final
class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``, with faults on cue.

    Run it in a nursery, ``port = await nursery.start(proxy.run)``, and end it with
    :meth:`close` (or by cancelling that nursery); or use :func:`open_fault_proxy`.
    Ending it closes every connection. ``rng`` draws the latency jitter (seeded, so a run
    can be repeated); it defaults to ``random.Random(0)``.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = LOOPBACK,
        listen_port: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        if not _is_loopback(upstream_host):
            raise ValueError(f"upstream_host must be a loopback address, got {upstream_host!r}")
        self._upstream = (upstream_host, upstream_port)
        self._listen_port = listen_port
        self._faults = _Faults(rng if rng is not None else random.Random(0))
        self._pairs: set[_Pair] = set()
        self._scope: trio.CancelScope | None = None
        self._closed = False
        self._port: int | None = None
        self._accepted = 0
        self._refused = 0
        self._bytes: dict[Direction, int] = dict.fromkeys(Direction, 0)
        self._injected: Counter[FaultKind] = Counter()

    def __repr__(self) -> str:
        host, port = self._upstream
        return (
            f"<FaultProxy {LOOPBACK}:{self._port} -> {host}:{port} open={len(self._pairs)} "
            f"accepted={self._accepted} up={self._bytes[Direction.UPSTREAM]} "
            f"down={self._bytes[Direction.DOWNSTREAM]} closed={self._closed}>"
        )

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has no port until run() has started")
        return self._port

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(
            connections_accepted=self._accepted,
            connections_refused=self._refused,
            connections_open=len(self._pairs),
            bytes_upstream=self._bytes[Direction.UPSTREAM],
            bytes_downstream=self._bytes[Direction.DOWNSTREAM],
            faults_injected=MappingProxyType({kind: self._injected[kind] for kind in FaultKind}),
        )

    def inject(self, fault: Fault) -> None:
        """Start ``fault`` now (see the module docstring for each kind's semantics)."""
        faults, now = self._faults, trio.current_time()
        match fault:
            case Latency():
                one = fault.direction
                for direction in Direction if one is None else (one,):
                    faults.latency[direction] = fault
            case Cut():
                faults.refuse_until = max(faults.refuse_until, now + fault.refuse_for_s)
                self._close_pairs(reset=fault.reset)
            case Blackhole():
                faults.blackhole_until = max(faults.blackhole_until, now + fault.duration_s)
            case SlowReader():
                faults.bytes_per_s = fault.bytes_per_s
            case _:
                assert_never(fault)
        self._injected[fault.kind] += 1
        faults.changed()

    def heal(self, *kinds: FaultKind) -> None:
        """End the faults of ``kinds`` (all of them if none is named): latency and the slow
        reader stop for bytes read from now on, a blackhole releases what it held, and
        new connections are no longer refused. Connections already cut stay closed."""
        faults = self._faults
        for kind in kinds or tuple(FaultKind):
            if kind is FaultKind.LATENCY:
                faults.latency = dict.fromkeys(Direction)
            elif kind is FaultKind.SLOW_READER:
                faults.bytes_per_s = None
            elif kind is FaultKind.BLACKHOLE:
                faults.blackhole_until = -math.inf
            else:
                faults.refuse_until = -math.inf
        faults.changed()

    def close(self) -> None:
        """Close every connection and stop listening; :meth:`run` returns. Idempotent."""
        self._closed = True
        self._close_pairs(reset=False)
        if self._scope is not None:
            self._scope.cancel()

    def _close_pairs(self, *, reset: bool) -> None:
        # A closed pair no longer counts as open, although its tasks unwind a little later.
        pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            pair.close_now(reset=reset)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and forward until :meth:`close` or cancellation; reports the bound port."""
        if self._scope is not None or self._closed:
            raise RuntimeError(f"run() may be called once, before close(): {self!r}")
        self._scope = trio.CancelScope()
        with self._scope:
            (listener,) = await trio.open_tcp_listeners(self._listen_port, host=LOOPBACK)
            async with listener, trio.open_nursery() as nursery:
                self._port = listener.socket.getsockname()[1]
                task_status.started(self._port)
                while True:
                    client = await listener.accept()
                    self._accepted += 1
                    if self._faults.refuse_until > trio.current_time():
                        self._refused += 1
                        _close_now(client, reset=True)
                        continue
                    # Registered before its task runs, so a cut right now closes it too.
                    pair = _Pair(client)
                    self._pairs.add(pair)
                    nursery.start_soon(self._serve, pair)

    async def _serve(self, pair: _Pair) -> None:
        client = pair.client
        try:
            with pair.scope:
                await self._faults.wait_not_blackholed()
                try:
                    pair.upstream = await trio.open_tcp_stream(*self._upstream)
                except OSError:
                    return  # upstream is down: the client sees its connection close
                async with trio.open_nursery() as nursery:
                    for link in (
                        _Link(Direction.UPSTREAM, client, pair.upstream),
                        _Link(Direction.DOWNSTREAM, pair.upstream, client),
                    ):
                        nursery.start_soon(self._read, pair, link)
                        nursery.start_soon(self._write, pair, link)
        finally:
            self._pairs.discard(pair)
            pair.close_now(reset=False)

    async def _read(self, pair: _Pair, link: _Link) -> None:
        faults, paced_until = self._faults, -math.inf
        async with link.send:  # closing it tells the writer that src reached EOF
            try:
                while True:
                    # A partition and a full link both stop reading, so the backlog waits
                    # in the kernel and then in the sender (Redis's output buffer).
                    await faults.wait_not_blackholed()
                    await link.wait_for_room()
                    data = await link.src.receive_some(faults.read_size(link.direction))
                    if not data:
                        return
                    paced_until = await faults.pace(link.direction, len(data), paced_until)
                    link.held_bytes += len(data)
                    link.send.send_nowait((faults.release_time(link.direction), data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._broken(pair)

    async def _write(self, pair: _Pair, link: _Link) -> None:
        async with link.receive:
            try:
                # One writer drains the link in order: a later chunk with an earlier
                # release time leaves right after its predecessor, never before it.
                async for release_at, data in link.receive:
                    await trio.sleep_until(release_at)
                    await self._faults.wait_not_blackholed()
                    await link.dst.send_all(data)
                    link.written(len(data))
                    self._bytes[link.direction] += len(data)
                await self._faults.wait_not_blackholed()  # a partition holds the FIN too
                await link.dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._broken(pair)

    async def _broken(self, pair: _Pair) -> None:
        # A side reset or closed under us: end the pair, after any blackhole, since a
        # partition hides a reset as well.
        await self._faults.wait_not_blackholed()
        pair.scope.cancel()


@asynccontextmanager
async def open_fault_proxy(
    upstream_port: int,
    *,
    upstream_host: str = LOOPBACK,
    listen_port: int = 0,
    rng: random.Random | None = None,
) -> AsyncIterator[FaultProxy]:
    """A running :class:`FaultProxy` for the block; on exit every connection is closed.

    An exception raised in the block leaves it as raised, not wrapped in the
    ExceptionGroup the proxy's nursery would add.
    """
    proxy = FaultProxy(upstream_port, upstream_host=upstream_host, listen_port=listen_port, rng=rng)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        try:
            yield proxy
        except BaseException as exc:  # re-raised below, outside the nursery
            body_error = exc
        finally:
            proxy.close()
    if body_error is not None:
        raise body_error
