"""Private redis-server processes for tests and the real-Redis tier.

Loopback only, bounded in time, stopped by pid.

Every wait here gives up after :data:`STARTUP_TIMEOUT_S` with an error that includes the
server's log tail, so a broken environment fails loudly instead of hanging a test run.
"""

from __future__ import annotations

import abc
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from streamcheck.impl.redis import (
    CoredisRedis,
    RedisClientName,
    RedisLike,
    open_coredis,
    open_redis_client,
)

HOST = "127.0.0.1"
# How long a server (or a whole cluster) may take to answer before we call it broken.
STARTUP_TIMEOUT_S = 15.0
# How long a SIGTERMed server gets to exit before SIGKILL.
STOP_GRACE_S = 5.0
# Redis Cluster's bus listens on port + 10000.
CLUSTER_BUS_OFFSET = 10000


def have_redis_binaries() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def find_free_port(*, with_cluster_bus: bool = False) -> int:
    """A loopback TCP port nobody listens on (and, if asked, whose bus port is free too)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if not with_cluster_bus:
            return port
        bus = port + CLUSTER_BUS_OFFSET
        if bus <= 65535 and _port_is_free(bus):
            return port
    raise RuntimeError("no free loopback port found")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


RespReply = str | int | list["RespReply"] | None


def resp_call(port: int, *args: str, timeout: float = 1.0) -> RespReply:
    """One command over a fresh socket; enough RESP2 for simple, error, integer, bulk and
    array replies. Raises ``OSError`` when nothing answers, ``RuntimeError`` on an error
    reply."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        return _read_reply(sock.makefile("rb"), port)


def _read_reply(reader: BinaryIO, port: int) -> RespReply:
    line = reader.readline().decode().rstrip("\r\n")
    if not line:
        raise OSError(f"connection to port {port} closed without a reply")
    kind, rest = line[0], line[1:]
    if kind == "+":
        return rest
    if kind == "-":
        raise RuntimeError(rest)
    if kind == ":":
        return int(rest)
    if kind == "$":
        size = int(rest)
        if size < 0:
            return None
        return reader.read(size + 2)[:size].decode()
    if kind == "*":
        count = int(rest)
        return None if count < 0 else [_read_reply(reader, port) for _ in range(count)]
    raise RuntimeError(f"unexpected reply {line!r}")


def answers_ping(port: int, *, timeout: float = 0.5) -> bool:
    try:
        return resp_call(port, "PING", timeout=timeout) == "PONG"
    except (OSError, RuntimeError):
        return False


def _responds(port: int) -> bool:
    """Any reply counts, also ``-NOAUTH`` from a server started with ``--requirepass``."""
    try:
        resp_call(port, "PING", timeout=0.5)
    except RuntimeError:
        return True
    except OSError:
        return False
    return True


class _ServerProcess(abc.ABC):
    """A server process on a free loopback port with its own directory, stopped by pid:
    what :class:`RedisServer` and :class:`OwnServer` share. Subclasses start it."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self._dir = directory
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    @abc.abstractmethod
    def log_path(self) -> Path: ...

    @abc.abstractmethod
    def start(self) -> None:
        """Start the process; return once it answers."""

    def restart(self) -> None:
        """Stop and start again on the same port and directory: every connection drops;
        what survives is what the server made durable (nothing, for a Redis without AOF)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`; always reaps the process."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._paused:
            self._paused = False
            _signal(process, signal.SIGCONT)  # a stopped process can't handle SIGTERM
        _signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def pause(self) -> None:
        if self._process is None:
            raise RuntimeError(f"{self!r} is not running")
        _signal(self._process, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._process is None:
            raise RuntimeError(f"{self!r} is not running")
        _signal(self._process, signal.SIGCONT)
        self._paused = False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class RedisServer(_ServerProcess):
    """One ``redis-server`` on a free loopback port, without persistence.

    Use it as a context manager (it stops on exit, also on failure) or call
    :meth:`start` / :meth:`stop`. :meth:`pause` / :meth:`resume` freeze it with
    SIGSTOP / SIGCONT (connections stay open but nothing answers).
    """

    def __init__(self, *, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        port = port if port is not None else find_free_port()
        super().__init__(port, Path(tempfile.mkdtemp(prefix=f"redis-{port}-")))
        self._extra_args = tuple(extra_args)

    def __repr__(self) -> str:
        pid = self._process.pid if self._process else None
        return f"<RedisServer port={self.port} pid={pid} paused={self._paused}>"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def command_line(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            str(self.log_path),
            *self._extra_args,
        ]

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already running")
        self._process = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_until(lambda: _responds(self.port), "answer PING")
        except BaseException:
            self.stop()
            raise

    def _wait_until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if check():
                return
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self._process.returncode} "
                    f"before it could {what}:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        raise RuntimeError(
            f"redis-server on port {self.port} did not {what} within {STARTUP_TIMEOUT_S} s:\n"
            f"{self.log_tail()}"
        )


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    if process.poll() is None:
        os.kill(process.pid, signum)


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes (each with ``replicas_per_master``
    replicas) on free loopback ports.

    Node timeout 5000 ms (docs/redis.md). Created with
    ``redis-cli --cluster create``; :meth:`start` returns once every node reports
    ``cluster_state:ok``. Every node is stopped by pid, also when startup fails.
    """

    NODE_TIMEOUT_MS = 5000

    def __init__(self, *, masters: int = 3, replicas_per_master: int = 0) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.nodes: list[RedisServer] = []
        self._masters = masters
        self._replicas = replicas_per_master

    def __repr__(self) -> str:
        return f"<RedisClusterServers ports={self.ports}>"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """A URL naming the first node; clients discover the others from it."""
        return self.nodes[0].url

    def start(self) -> None:
        try:
            for _ in range(self._masters * (1 + self._replicas)):
                port = find_free_port(with_cluster_bus=True)
                node = RedisServer(
                    port=port,
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        str(self.NODE_TIMEOUT_MS),
                    ),
                )
                self.nodes.append(node)
                node.start()
            self._create()
            self._wait_for_state_ok()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _create(self) -> None:
        command = [
            "redis-cli",
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas",
            str(self._replicas),
            "--cluster-yes",
        ]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    def _wait_for_state_ok(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(self._state_ok(port) for port in self.ports) and self._replicas_attached():
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster {self.ports} not ok within {STARTUP_TIMEOUT_S} s")

    def _replicas_attached(self) -> bool:
        """Every node sees every replica as one: until then a replica still shows as an
        empty master, and a failover or a slot migration started then picks wrong nodes."""
        wanted = self._masters * self._replicas
        for port in self.ports:
            try:
                nodes = resp_call(port, "CLUSTER", "NODES")
            except (OSError, RuntimeError):
                return False
            if not isinstance(nodes, str):
                return False
            if sum("slave" in line.split()[2] for line in nodes.splitlines() if line) != wanted:
                return False
        return True

    @staticmethod
    def _state_ok(port: int) -> bool:
        try:
            info = resp_call(port, "CLUSTER", "INFO")
        except (OSError, RuntimeError):
            return False
        return isinstance(info, str) and "cluster_state:ok" in info


def open_redis(url: str, *, cluster: bool = False) -> AbstractAsyncContextManager[CoredisRedis]:
    """The adapter tests use; the same as :func:`streamcheck.impl.redis.open_coredis`."""
    return open_coredis(url, cluster=cluster)


def open_redis_as(
    url: str, *, cluster: bool = False, client: RedisClientName = "coredis"
) -> AbstractAsyncContextManager[RedisLike]:
    """The adapter of the named client (:func:`streamcheck.impl.redis.open_redis_client`)."""
    return open_redis_client(url, cluster=cluster, client=client)


class OwnServer(_ServerProcess):
    """An implementation's own server (``storage: own`` in its hello), run by the harness
    like a redis-server: on a free loopback port, in a data directory kept across
    :meth:`restart`, frozen by :meth:`pause`, stopped by pid. ``command`` may name
    ``{port}`` and ``{dir}``; the server is up once the port accepts connections."""

    def __init__(self, command: Sequence[str], log_path: Path) -> None:
        port = find_free_port()
        super().__init__(port, Path(tempfile.mkdtemp(prefix=f"own-server-{port}-")))
        self._command = [
            word.replace("{port}", str(port)).replace("{dir}", str(self._dir)) for word in command
        ]
        self._log_path = log_path

    def __repr__(self) -> str:
        pid = self._process.pid if self._process else None
        return f"<OwnServer port={self.port} pid={pid} command={self._command[:3]}>"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_path

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already running")
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            except OSError as exc:
                raise RuntimeError(f"cannot start the server {self._command}: {exc}") from None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                state = self._process.poll()
                self.stop()
                raise RuntimeError(
                    f"the server {self._command} did not listen on port {self.port} within "
                    f"{STARTUP_TIMEOUT_S} s (exit status {state}):\n{self.log_tail()}"
                )
            time.sleep(0.02)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
