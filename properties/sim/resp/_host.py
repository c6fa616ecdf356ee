"""One trio loop, in a thread, for every foreign world of a process, and spare agents.

An example needs fresh agent processes (a replica's state must not leak from one
example into the next), and starting one costs about half a second of a loaded core
(Node with ioredis, or Python with streamcheck). The host keeps one spare agent per
command, started and past its hello while the previous example runs, so an example
starts by sending inits. A spare is an agent that has said hello and read nothing: it
knows no replica name, no port and no settings until its init.
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from streamcheck.properties.protocol import Agent, AgentFailed

T = TypeVar("T")

__all__ = ["ActiveAgent", "Host", "host"]


class ActiveAgent(Agent):
    """An agent whose every stdout line is reported (the world's quiet window)."""

    on_line: Callable[[], None] = staticmethod(lambda: None)

    def _line(self, line: str) -> None:
        self.on_line()
        super()._line(line)


class Host:
    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._stopping: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="streamcheck-agents-")
        self._spares: dict[tuple[str, ...], list[ActiveAgent]] = {}
        self._spawned = 0

    # -- the loop -----------------------------------------------------------------------

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the host's loop; return its result (or raise)."""
        self._ensure()
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None
        return self._nursery

    def _ensure(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, daemon=True, name="foreign")
                self._thread.start()
                atexit.register(self.shutdown)
        self._ready.wait()

    def _main(self) -> None:
        trio.run(self._serve)

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stopping.wait()
            for spares in self._spares.values():
                for agent in spares:
                    agent.process.kill()
            nursery.cancel_scope.cancel()

    def shutdown(self) -> None:
        if self._token is None or self._stopping is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._stopping.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._dir.cleanup()

    # -- agents -------------------------------------------------------------------------

    async def agent(self, command: list[str]) -> ActiveAgent:
        """A started agent that has said hello: a spare if one is ready, else a new one;
        a spare for the next example is started either way."""
        key = tuple(command)
        spares = self._spares.setdefault(key, [])
        agent = spares.pop(0) if spares else await self._spawn(command)
        self.nursery.start_soon(self._refill, command)
        if agent.process.returncode is not None:
            agent = await self._spawn(command)
        return agent

    async def _refill(self, command: list[str]) -> None:
        key = tuple(command)
        if len(self._spares.get(key, [])) >= 2:
            return
        try:
            agent = await self._spawn(command)
        except AgentFailed:
            return  # the next example starts one itself and reports the failure
        self._spares.setdefault(key, []).append(agent)

    async def _spawn(self, command: list[str]) -> ActiveAgent:
        self._spawned += 1
        name = f"agent{self._spawned}"
        workdir = Path(self._dir.name)
        transcript = workdir / f"{name}.jsonl"
        stderr = workdir / f"{name}.stderr"
        with stderr.open("wb") as err:
            try:
                process = await trio.lowlevel.open_process(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
                )
            except OSError as exc:
                raise AgentFailed(f"cannot start agent ({command[0]}): {exc}") from None
        agent = ActiveAgent(name, process, transcript, stderr, started_at=trio.current_time())
        self.nursery.start_soon(agent.pump)
        await agent.wait_hello()
        return agent


#: The process's host (started on first use).
host = Host()
