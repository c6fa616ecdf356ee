"""The fault proxy of the real-Redis tier, against a real redis-server.

Determinism rules for this module: loopback only, port 0 everywhere, one private
redis-server for the module (stopped by pid), every key unique to its test, and an
absolute ``fail_after`` around every test body so a hang fails loudly. Clients speak raw
RESP2 so that what they see is exactly what the proxy forwarded. The only real-time
waits are the fault windows themselves (a blackhole, a refusal) and one negative check
that a held reply has not arrived yet.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Literal, final

import pytest
import trio
import trio.testing

from streamcheck.impl.redis import RedisConnectionError, open_coredis
from streamcheck.properties.realredis import (
    LOOPBACK,
    Blackhole,
    Cut,
    Direction,
    FaultKind,
    FaultProxy,
    Latency,
    SlowReader,
    open_fault_proxy,
)
from tests.redis_support import RedisServer, find_free_port, have_redis_binaries

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH"),
]

# Every test ends within this, fault windows included (they are a few hundred ms).
TEST_BOUND_S = 5.0
# How often a test polls state that only Redis has (CLIENT LIST).
POLL_S = 0.01

RespReply = str | int | bytes | None | list["RespReply"]


class RespError(Exception):
    """An error reply (``-ERR ...``)."""


def encode(*args: str) -> bytes:
    return b"".join(
        [f"*{len(args)}\r\n".encode()]
        + [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]
    )


@final
class RespClient:
    """A raw RESP2 client on one trio socket: enough for simple, error, integer, bulk and
    array replies (pub/sub messages are arrays)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def send(self, *args: str) -> None:
        await self.stream.send_all(encode(*args))

    async def call(self, *args: str) -> RespReply:
        await self.send(*args)
        return await self.reply()

    async def reply(self) -> RespReply:
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else (await self._exactly(size + 2))[:size]
        if kind == b"*":
            return [await self.reply() for _ in range(int(rest))]
        raise AssertionError(f"unexpected RESP line {line!r}")

    async def closed_how(self) -> Literal["eof", "reset"]:
        """Wait until the peer closes; fails if any byte arrives first."""
        try:
            data = await self.stream.receive_some()
        except trio.BrokenResourceError:
            return "reset"
        assert data == b"", f"expected the connection to close, got {data!r}"
        return "eof"

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _fill(self) -> None:
        data = await self.stream.receive_some(256 * 1024)
        if not data:
            raise EOFError("the connection closed in the middle of a reply")
        self._buffer += data


@asynccontextmanager
async def open_resp(port: int) -> AsyncIterator[RespClient]:
    stream = await trio.open_tcp_stream(LOOPBACK, port)
    async with stream:
        yield RespClient(stream)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def key() -> str:
    return f"proxy:{uuid.uuid4().hex[:8]}"


def _task_count() -> int:
    """Every task of this trio run, walking the tree from the root task."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, tasks = 0, [root]
    while tasks:
        task = tasks.pop()
        count += 1
        tasks.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return count


# --- the values: validated when built -------------------------------------------------


def test_fault_values_reject_impossible_parameters() -> None:
    with pytest.raises(ValueError, match=r"^delay_s must be finite and >= 0, got -0\.1$"):
        Latency(delay_s=-0.1)
    with pytest.raises(ValueError, match=r"^jitter_s must be finite and >= 0, got inf$"):
        Latency(delay_s=0.0, jitter_s=float("inf"))
    with pytest.raises(ValueError, match=r"^duration_s must be finite and > 0, got 0$"):
        Blackhole(duration_s=0)
    with pytest.raises(ValueError, match=r"^bytes_per_s must be finite and > 0, got 0$"):
        SlowReader(bytes_per_s=0)
    with pytest.raises(ValueError, match=r"^refuse_for_s must be finite and >= 0, got -1$"):
        Cut(refuse_for_s=-1)


def test_proxy_refuses_an_upstream_off_loopback() -> None:
    message = r"^upstream_host must be a loopback address, got '10\.0\.0\.1'$"
    with pytest.raises(ValueError, match=message):
        FaultProxy(6379, upstream_host="10.0.0.1")


def test_latency_draws_are_seeded_and_bounded() -> None:
    latency = Latency(delay_s=0.01, jitter_s=0.02)
    first_rng, again_rng = random.Random(7), random.Random(7)
    first = [latency.draw(first_rng) for _ in range(50)]
    assert first == [latency.draw(again_rng) for _ in range(50)]
    assert all(0.01 <= delay <= 0.03 for delay in first)
    assert len(set(first)) == 50
    # Without jitter the rng is left alone, so other draws from it stay reproducible.
    rng = random.Random(7)
    state = rng.getstate()
    assert Latency(delay_s=0.01).draw(rng) == 0.01
    assert rng.getstate() == state


async def test_statistics_count_faults_per_kind() -> None:
    proxy = FaultProxy(6379)
    proxy.inject(Latency(delay_s=0.01, direction=Direction.UPSTREAM))
    proxy.inject(Latency(delay_s=0.01))
    proxy.inject(Cut())
    proxy.inject(Blackhole(duration_s=1.0))
    proxy.inject(SlowReader(bytes_per_s=1000))
    proxy.heal()
    injected = proxy.statistics().faults_injected
    assert dict(injected) == {
        FaultKind.LATENCY: 2,
        FaultKind.CUT: 1,
        FaultKind.BLACKHOLE: 1,
        FaultKind.SLOW_READER: 1,
    }


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


@asynccontextmanager
async def open_echo_through_proxy(
    rng: random.Random,
) -> AsyncIterator[tuple[FaultProxy, trio.SocketStream]]:
    """A proxy in front of an in-process echo server, and a client connected through it.
    All the I/O is in this process over loopback, so an autojump clock only moves when the
    proxy is really waiting for a deadline."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host=LOOPBACK))
        echo_port = listeners[0].socket.getsockname()[1]
        async with open_fault_proxy(echo_port, rng=rng) as proxy:
            stream = await trio.open_tcp_stream(LOOPBACK, proxy.port)
            async with stream:
                yield proxy, stream
        nursery.cancel_scope.cancel()


async def _echo_time(stream: trio.SocketStream, data: bytes) -> float:
    """How long (on trio's clock) ``data`` takes to come back through the proxy."""
    start = trio.current_time()
    await stream.send_all(data)
    received = b""
    while len(received) < len(data):
        received += await stream.receive_some()
    assert received == data
    return trio.current_time() - start


async def test_fault_deadlines_follow_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    # On a mock clock the I/O takes no time, so each round trip is exactly the faults'.
    draws = random.Random(5)
    jittered = Latency(delay_s=1.0, jitter_s=1.0, direction=Direction.UPSTREAM)
    with trio.fail_after(1000):  # mock seconds: a hang jumps straight to it
        async with open_echo_through_proxy(random.Random(5)) as (proxy, stream):
            assert await _echo_time(stream, b"a") == 0.0
            proxy.inject(Latency(delay_s=10.0, direction=Direction.DOWNSTREAM))
            assert await _echo_time(stream, b"b") == pytest.approx(10.0)
            proxy.inject(jittered)  # upstream now jitters; downstream keeps its 10 s
            assert await _echo_time(stream, b"c") == pytest.approx(10.0 + jittered.draw(draws))
            proxy.heal(FaultKind.LATENCY)
            proxy.inject(Blackhole(duration_s=5.0))
            proxy.inject(Blackhole(duration_s=30.0))  # a longer one extends the window
            proxy.inject(Blackhole(duration_s=1.0))  # a shorter one does not shorten it
            assert await _echo_time(stream, b"d") == pytest.approx(30.0)
            proxy.inject(SlowReader(bytes_per_s=100))
            assert await _echo_time(stream, b"e" * 1000) == pytest.approx(10.0)


# --- pass-through ---------------------------------------------------------------------


async def test_ping_set_get_pass_through_and_bytes_are_counted(
    redis_server: RedisServer, key: str
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy, open_resp(proxy.port) as client:
            assert await client.call("PING") == "PONG"
            assert await client.call("SET", key, "v") == "OK"
            assert await client.call("GET", key) == b"v"
    stats = proxy.statistics()
    assert (stats.connections_accepted, stats.connections_open) == (1, 0)
    sent = encode("PING") + encode("SET", key, "v") + encode("GET", key)
    assert stats.bytes_upstream == len(sent)
    assert stats.bytes_downstream == len(b"+PONG\r\n+OK\r\n$1\r\nv\r\n")


async def test_publish_reaches_a_subscriber_through_the_proxy(
    redis_server: RedisServer, key: str
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with (
            open_fault_proxy(redis_server.port) as proxy,
            open_resp(proxy.port) as subscriber,
            open_resp(proxy.port) as publisher,
        ):
            assert await subscriber.call("SUBSCRIBE", key) == [b"subscribe", key.encode(), 1]
            assert await publisher.call("PUBLISH", key, "hello") == 1
            assert await subscriber.reply() == [b"message", key.encode(), b"hello"]


async def test_run_in_the_callers_nursery_reports_its_port(redis_server: RedisServer) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with trio.open_nursery() as nursery:
            proxy = FaultProxy(redis_server.port)
            port = await nursery.start(proxy.run)
            assert port == proxy.port != redis_server.port
            async with open_resp(port) as client:
                assert await client.call("PING") == "PONG"
            proxy.close()  # run() returns, so the nursery can exit


async def test_an_upstream_that_is_down_closes_the_client() -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with (
            open_fault_proxy(find_free_port()) as proxy,
            open_resp(proxy.port) as client,
        ):
            assert await client.closed_how() == "eof"


async def test_an_error_in_the_block_leaves_it_unwrapped(redis_server: RedisServer) -> None:
    with trio.fail_after(TEST_BOUND_S), pytest.raises(KeyError, match=r"^'mine'$"):
        async with open_fault_proxy(redis_server.port):
            raise KeyError("mine")


async def test_coredis_works_through_the_proxy_and_after_a_cut(
    redis_server: RedisServer, key: str
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with (
            open_fault_proxy(redis_server.port) as proxy,
            open_coredis(f"redis://{LOOPBACK}:{proxy.port}") as redis,
        ):
            await redis.sadd(key, "a", "b")
            assert await redis.smembers(key) == {"a", "b"}
            proxy.inject(Cut())
            # The pool's connection died under it. coredis notices and reconnects; a command
            # that raced the EOF may fail once with a connection error, never twice.
            try:
                count = await redis.scard(key)
            except RedisConnectionError:
                count = await redis.scard(key)
            assert count == 2
    assert proxy.statistics().connections_accepted == 2


# --- latency --------------------------------------------------------------------------


async def test_latency_adds_at_least_its_delay_in_each_direction(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy, open_resp(proxy.port) as client:
            assert await client.call("PING") == "PONG"
            proxy.inject(Latency(delay_s=0.15, direction=Direction.UPSTREAM))
            proxy.inject(Latency(delay_s=0.1, jitter_s=0.05, direction=Direction.DOWNSTREAM))
            start = trio.current_time()
            assert await client.call("PING") == "PONG"
            assert trio.current_time() - start >= 0.25
            proxy.heal(FaultKind.LATENCY)
            start = trio.current_time()
            assert await client.call("PING") == "PONG"
            assert trio.current_time() - start < 0.25


async def test_jittered_latency_keeps_100_pipelined_incrs_in_order(
    redis_server: RedisServer, key: str
) -> None:
    # Parallel sleeps, one per chunk, would let a chunk with a short draw overtake a longer
    # one and garble the pipeline; the proxy's FIFO writer must not.
    with trio.fail_after(TEST_BOUND_S):
        async with (
            open_fault_proxy(redis_server.port, rng=random.Random(1)) as proxy,
            open_resp(proxy.port) as client,
        ):
            proxy.inject(Latency(delay_s=0.001, jitter_s=0.03))
            for _ in range(100):
                await client.send("INCR", key)
                # Let the proxy read this command alone, so each is its own chunk with its
                # own jitter draw.
                await trio.testing.wait_all_tasks_blocked()
            assert [await client.reply() for _ in range(100)] == list(range(1, 101))


# --- cut ------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_cut_closes_an_established_connection_and_a_new_one_works(
    redis_server: RedisServer, reset: bool
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy:
            async with open_resp(proxy.port) as victim:
                assert await victim.call("PING") == "PONG"
                proxy.inject(Cut(reset=reset))
                assert await victim.closed_how() == ("reset" if reset else "eof")
            assert proxy.statistics().connections_open == 0
            async with open_resp(proxy.port) as fresh:
                assert await fresh.call("PING") == "PONG"
    assert proxy.statistics().faults_injected[FaultKind.CUT] == 1


async def test_cut_refuses_new_connections_for_its_window(redis_server: RedisServer) -> None:
    window_s = 0.3
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy:
            proxy.inject(Cut(refuse_for_s=window_s))
            start = trio.current_time()
            try:
                refused = await trio.open_tcp_stream(LOOPBACK, proxy.port)
            except OSError:
                pass  # the reset arrived before connect() returned
            else:
                async with refused:
                    assert await RespClient(refused).closed_how() == "reset"
            await trio.sleep_until(start + window_s)  # the window is the condition
            async with open_resp(proxy.port) as fresh:
                assert await fresh.call("PING") == "PONG"
            stats = proxy.statistics()
    assert (stats.connections_accepted, stats.connections_refused) == (2, 1)


# --- blackhole ------------------------------------------------------------------------


async def test_blackhole_holds_traffic_for_its_window_then_releases_it(
    redis_server: RedisServer,
) -> None:
    window_s = 0.3
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy, open_resp(proxy.port) as client:
            assert await client.call("PING") == "PONG"
            up_before = proxy.statistics().bytes_upstream
            proxy.inject(Blackhole(duration_s=window_s))
            start = trio.current_time()
            await client.send("ECHO", "held")
            # A connection opened during the blackhole is accepted but not serviced.
            async with open_resp(proxy.port) as late:
                await late.send("ECHO", "late")
                await trio.testing.wait_all_tasks_blocked()  # the proxy has read both
                assert proxy.statistics().bytes_upstream == up_before
                assert await client.reply() == b"held"
                assert trio.current_time() - start >= window_s
                assert await late.reply() == b"late"
                assert trio.current_time() - start >= window_s


async def test_heal_ends_a_blackhole_early(redis_server: RedisServer) -> None:
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy, open_resp(proxy.port) as client:
            proxy.inject(Blackhole(duration_s=60.0))
            await client.send("PING")
            with trio.move_on_after(0.2) as held:
                await client.reply()
            assert held.cancelled_caught, "a reply crossed the blackhole"
            proxy.heal(FaultKind.BLACKHOLE)
            assert await client.reply() == "PONG"


# --- slow reader ----------------------------------------------------------------------


async def test_slow_reader_limits_downstream_throughput(
    redis_server: RedisServer, key: str
) -> None:
    size, rate = 256 * 1024, 640 * 1024  # at least 0.4 s
    with trio.fail_after(TEST_BOUND_S):
        async with open_fault_proxy(redis_server.port) as proxy, open_resp(proxy.port) as client:
            proxy.inject(SlowReader(bytes_per_s=rate))
            # Upstream is not limited: the large SET goes through at full speed.
            start = trio.current_time()
            assert await client.call("SET", key, "x" * size) == "OK"
            assert trio.current_time() - start < size / rate
            start = trio.current_time()
            value = await client.call("GET", key)
            elapsed = trio.current_time() - start
    assert value == b"x" * size
    assert elapsed >= size / rate


async def test_slow_reader_makes_redis_buffer_the_reply(
    redis_server: RedisServer, key: str
) -> None:
    # The point of reading slowly rather than queueing in the proxy: once the kernel's
    # socket buffers are full (a few MiB on loopback), the reply waits in Redis's client
    # output buffer, where client-output-buffer-limit can act on it.
    size, rate = 16 * 1024 * 1024, 32 * 1024 * 1024  # at least 0.5 s
    name = key.replace(":", "-")
    with trio.fail_after(TEST_BOUND_S):
        async with (
            open_fault_proxy(redis_server.port) as proxy,
            open_resp(proxy.port) as client,
            open_resp(redis_server.port) as admin,
        ):
            assert await client.call("SET", key, "x" * size) == "OK"
            assert await client.call("CLIENT", "SETNAME", name) == "OK"
            proxy.inject(SlowReader(bytes_per_s=rate))
            await client.send("GET", key)
            # Redis's state can only be polled; the bound is the GET's own duration.
            for _ in range(int(size / rate / POLL_S)):
                if await _output_buffer(admin, name) > 0:
                    break
                await trio.sleep(POLL_S)
            else:
                pytest.fail("Redis never buffered the reply for the slow reader")
            assert await client.reply() == b"x" * size
            assert await _output_buffer(admin, name) == 0


async def _output_buffer(admin: RespClient, name: str) -> int:
    """``omem`` of the client called ``name``, from CLIENT LIST on a direct connection."""
    listing = await admin.call("CLIENT", "LIST")
    assert isinstance(listing, bytes)
    for line in listing.decode().splitlines():
        fields = dict(field.split("=", 1) for field in line.split())
        if fields["name"] == name:
            return int(fields["omem"])
    raise AssertionError(f"no client named {name} in {listing!r}")


# --- closing --------------------------------------------------------------------------


async def test_closing_the_proxy_closes_every_connection_and_leaks_no_task(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(TEST_BOUND_S):
        before = _task_count()
        async with AsyncExitStack() as stack:
            async with open_fault_proxy(redis_server.port) as proxy:
                clients = [await stack.enter_async_context(open_resp(proxy.port)) for _ in range(3)]
                for client in clients:
                    assert await client.call("PING") == "PONG"
                # Each pair runs its handler and a reader and a writer per direction.
                assert _task_count() >= before + 1 + 3 * 5
                port = proxy.port
            assert _task_count() == before
            assert proxy.statistics().connections_open == 0
            for client in clients:
                assert await client.closed_how() == "eof"
        with pytest.raises(OSError):
            await trio.open_tcp_stream(LOOPBACK, port)
