"""The command engine of the simulated Redis: fakeredis 2.40 driven directly.

Every private fakeredis hook the simulation depends on is used in this module only, and
``tests/test_sim_redis.py`` has a contract test for each (docs/simulation.md):

* the import paths ``fakeredis.FakeServer`` and ``fakeredis._socket.FakeSocket``;
* ``FakeSocket._process_command(fields)``, which runs one command (a whole Lua script
  included) synchronously and hands its reply to ``put_response``;
* the ``publish`` method name: commands are looked up by name on the socket, so an
  override also catches ``redis.call('PUBLISH', ...)`` inside Lua;
* the ``time`` module global of the modules that read the clock (:func:`sim_time`);
* ``Database._dict`` / ``_expiry_heap`` and ``FakeServer.script_cache``, to copy a
  dataset to a fresh replica and to forget scripts on a promoted one;
* ``_lua_redis_call`` (what ``redis.call`` runs), replaced by a copy without the scan
  of the Lua globals fakeredis makes before every call (see :class:`_SimSocket`);
* ``_get_server_runtime`` and ``FakeServer._lua_runtime``, to wrap the server's Lua
  runtime so each script is compiled once (see :class:`_CompilingRuntime`), and the
  server attributes it sets (``_LUA_ATTRIBUTES``), so that a copy shares the runtime;
* ``fakeredis._commands.command``, to add ``INFO`` (fakeredis has none), which answers
  only the ``run_id`` field: impl's scripts read it to notice a failover or restart.

Pitfall: the PUBLISH hook runs while fakeredis holds its server lock (a plain
``threading.Lock``): it must only enqueue and never run another engine command.
"""

from __future__ import annotations

import copy
import time as _real_time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Final

import fakeredis
import fakeredis._helpers
import fakeredis._socket._base
import fakeredis.commands_mixins.scripting_mixin
import fakeredis.commands_mixins.server_mixin
import fakeredis.model._stream
import redis
from fakeredis import _msgs
from fakeredis._commands import COMMANDS_WITH_SUB, command
from fakeredis._helpers import SimpleError, decode_command_bytes
from fakeredis._socket import FakeSocket

__all__ = ["Engine", "PublishHook", "TimeShim", "sim_time"]

#: Called for every PUBLISH the engine runs (a client's or a script's) with the channel
#: and message; returns the number of receivers. Must not re-enter the engine.
PublishHook = Callable[[bytes, bytes], int]

#: fakeredis modules whose ``time`` global is replaced while :func:`sim_time` is active:
#: command start (``db.time``, which every TTL check compares with), stream auto ids and
#: field TTLs, and the TIME command.
_PATCHED_MODULES: Final[tuple[ModuleType, ...]] = (
    fakeredis._socket._base,
    fakeredis._helpers,
    fakeredis.model._stream,
    fakeredis.commands_mixins.server_mixin,
)


class TimeShim:
    """Stands in for the ``time`` module inside fakeredis.

    ``time()`` returns :attr:`frozen` while a simulated command runs (Redis, too, reads
    its clock once per command and script), else the installed clock. Every other
    attribute is the real ``time`` module's.
    """

    def __init__(self) -> None:
        self.frozen: float | None = None
        self.clock: Callable[[], float] | None = None
        self.depth = 0
        self._saved: list[tuple[ModuleType, Any]] = []

    def time(self) -> float:
        frozen = self.frozen
        if frozen is not None:
            return frozen
        clock = self.clock
        return clock() if clock is not None else _real_time.time()

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_time, name)


_SHIM: Final = TimeShim()


@contextmanager
def sim_time(clock: Callable[[], float]) -> Iterator[TimeShim]:
    """Point fakeredis's clock at ``clock`` (seconds since the epoch) within the block.

    This patches module globals of fakeredis, so it is process-wide: every fakeredis
    server in the process reads ``clock`` while the block is active (nested blocks use
    the innermost clock; the previous one is restored on exit). Redis expiry is lazy, in
    fakeredis as in Redis: a key whose deadline passed vanishes when next touched.

    :class:`~streamcheck.properties.sim.SimRedis` needs it: every simulated command runs at the
    time of the simulated clock, read once when the command executes.
    """
    shim = _SHIM
    if shim.depth == 0:
        shim._saved = [(module, module.time) for module in _PATCHED_MODULES]
        for module in _PATCHED_MODULES:
            module.time = shim  # type: ignore[attr-defined]
    shim.depth += 1
    previous = shim.clock
    shim.clock = clock
    try:
        yield shim
    finally:
        shim.clock = previous
        shim.depth -= 1
        if shim.depth == 0:
            for module, original in shim._saved:
                module.time = original  # type: ignore[attr-defined]
            shim._saved = []


_convert_redis_arg: Callable[[Any], bytes] = (
    fakeredis.commands_mixins.scripting_mixin._convert_redis_arg
)


class _SimSocket(FakeSocket):
    """A fakeredis connection whose replies are kept, not queued, and whose PUBLISH goes
    to the simulation instead of fakeredis's own subscribers."""

    def __init__(self, server: Any, hook: PublishHook | None, run_id: str) -> None:
        super().__init__(server, 0, client_class=redis.Redis, client_info={"resp": 3})
        self.hook = hook
        self.reply: Any = None
        self.run_id = run_id

    @command((), (bytes,), flags="")
    def info(self, *sections: bytes) -> bytes:
        # Redis answers every section asked for; the run id is all impl reads.
        return f"# Server\r\nrun_id:{self.run_id}\r\n".encode()

    def put_response(self, msg: Any) -> None:
        self.reply = msg

    def publish(self, channel: bytes, message: bytes) -> int:
        hook = self.hook
        return hook(channel, message) if hook is not None else 0

    def _lua_redis_call(
        self, lua_runtime: Any, expected_globals: set[Any], op: bytes, *args: Any
    ) -> Any:
        # fakeredis 2.40's _lua_redis_call without its scan of every Lua global before
        # each redis.call (about a quarter of a script's cost). EVAL scans them again
        # after the script, so a script that sets a global still fails, only after its
        # writes instead of at the assignment.
        cmd = decode_command_bytes(op)
        if cmd in COMMANDS_WITH_SUB and args:
            cmd += " " + decode_command_bytes(_convert_redis_arg(args[0]))
            args = args[1:]
        func, sig = self._name_to_func(cmd)
        if func is None:
            raise SimpleError(_msgs.WRONG_ARGS_MSG7)
        new_args = [_convert_redis_arg(arg) for arg in args]
        result = self._run_command(func, sig, new_args, True)
        return self._convert_redis_result(lua_runtime, result)


class _CompilingRuntime:
    """Wraps fakeredis's shared ``LuaRuntime``: EVAL compiles its script on every run and
    then forces a full Lua garbage collection; here each source is compiled once and
    Lua's own incremental collector is left to do its job. Together about a fifth of a
    script's cost; the script runs exactly as before (a fresh call of the same chunk)."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._compiled: dict[Any, Any] = {}

    def execute(self, source: Any, *args: Any) -> Any:
        if source == "collectgarbage()":
            return None
        chunk = self._compiled.get(source)
        if chunk is None:
            chunk = self._compiled[source] = self._runtime.compile(source)
        return chunk(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


#: The attributes fakeredis's ``_get_server_runtime`` leaves on a server and EVAL reads.
_LUA_ATTRIBUTES: Final = (
    "_lua_runtime",
    "_lua_expected_globals",
    "_lua_set_keys_argv",
    "_lua_current_socket",
)


def _share_lua(donor: Any, server: Any) -> None:
    """Let ``server`` run its scripts in ``donor``'s Lua runtime (and compiled chunks).

    Creating a runtime and compiling every script again cost a fresh server about half
    a millisecond, three or more times per simulated run (primary, replica, each
    promoted copy). Sharing changes nothing a script can see: EVAL sets KEYS and ARGV
    before every run and points ``_lua_current_socket`` (one list, shared too, which
    ``redis.call`` reads) at the calling socket; compiled chunks are pure functions of
    their source; a script that sets a global fails (EVAL checks after every run) and
    impl's scripts set none; the engines sharing a runtime all belong to one
    :class:`~streamcheck.properties.sim.SimRedis`, so they run in one thread, one at a time.
    """
    for name in _LUA_ATTRIBUTES:
        setattr(server, name, getattr(donor, name))


class Engine:
    """One simulated Redis server: a fresh ``FakeServer`` and one socket driving it.

    Connections, pub/sub and delivery are the simulation's; the engine only runs
    commands atomically. Replies are raw fakeredis (RESP3, bytes); a Redis error reply
    is returned (not raised) as a redis-py ``ResponseError`` instance.
    """

    def __init__(
        self,
        hook: PublishHook | None,
        server: Any = None,
        *,
        number: int = 0,
        lua_from: Engine | None = None,
    ) -> None:
        if server is None:
            server = fakeredis.FakeServer(version=(7, 0))
        self.server: Any = server
        #: Each server process has its own run id (what INFO reports); a copy is a
        #: new process, so a promoted replica answers with a different one.
        self.number = number
        self._socket = _SimSocket(server, hook, f"{number:040x}")
        if lua_from is None:
            runtime = self._socket._get_server_runtime(server)
            server._lua_runtime = _CompilingRuntime(runtime)
        else:
            _share_lua(lua_from.server, server)

    @property
    def hook(self) -> PublishHook | None:
        hook: PublishHook | None = self._socket.hook
        return hook

    @hook.setter
    def hook(self, hook: PublishHook | None) -> None:
        self._socket.hook = hook

    @property
    def run_id(self) -> str:
        run_id: str = self._socket.run_id
        return run_id

    def execute(self, fields: list[bytes], now: float, *, replicating: str | None = None) -> Any:
        """Run one command at simulated time ``now``; return its raw reply.

        ``replicating`` is the run id of the primary whose command a replica replays:
        Redis replicates a script's effects, so what the script read from INFO there
        is what the replica must store (the replay re-runs the script here).
        """
        if _SHIM.depth == 0:
            raise RuntimeError("the simulated Redis runs only inside sim_time(clock)")
        sock = self._socket
        own_run_id = sock.run_id
        if replicating is not None:
            sock.run_id = replicating
        sock.reply = None
        _SHIM.frozen = now
        try:
            sock._process_command(fields)
        finally:
            _SHIM.frozen = None
            sock.run_id = own_run_id
        return sock.reply

    def copy(self, hook: PublishHook | None) -> Engine:
        """A new engine holding a deep copy of this one's dataset (a full resync)."""
        server = fakeredis.FakeServer(version=(7, 0))
        for index, db in self.server.dbs.items():
            target = server.dbs[index]
            target._dict = copy.deepcopy(db._dict)
            target._expiry_heap = list(db._expiry_heap)
            target.time = db.time
        return Engine(hook, server, number=self.number + 1, lua_from=self)

    def script_source(self, sha: bytes) -> bytes:
        """The body of a script this server ran or loaded, by its SHA1 (a foreign
        client's script, which no :class:`SimClient` registered)."""
        source: bytes = self.server.script_cache[sha]
        return source

    def forget_scripts(self) -> None:
        """SCRIPT FLUSH: a promoted replica has no scripts (Redis replicates effects)."""
        self.server.script_cache = {}
