"""A trio run that synchronous code drives one piece of work at a time, on its own thread.

The problem: Hypothesis's state machine is synchronous, the simulated world is a trio
program, and each rule must run its work to quiescence before the next rule is drawn.
A trio loop in a second thread does that, but every hop between the threads costs
about 100 µs of wake-ups (measured on our 2-core machines), paid several dozen times
per example. Here the trio run lives in a greenlet on the caller's thread instead:
handing work over and getting the answer back are two greenlet switches (a few µs).

While the caller runs, the trio run is frozen where its driver task handed the answer
back, after every other task had blocked; nothing in the world moves between pieces
of work, exactly as before with the thread.

Trio keeps "which run and which task is current" in a thread-local, which greenlets
on one thread share, and a run on the main thread claims the signal wakeup fd; each
switch therefore swaps both out and back in, so the caller is never "inside" the trio
run it drives (and may itself be inside another one). Loops that live side by side
should be closed in the reverse order of their creation: each run restores, when it
ends, the SIGINT handler it found when it started.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import greenlet
import trio
import trio.testing

# Private to trio, which is pinned (pyproject.toml): the thread-local holding the
# current run and task, to be swapped at every switch (see the module docstring).
from trio._core._run_context import GLOBAL_RUN_CONTEXT

Work = Callable[[], Awaitable[None] | None]
#: Builds the world inside the run; gets the nursery that owns every world task.
Setup = Callable[[trio.Nursery], Awaitable[None]]
#: Called at the end of every piece of work, inside the run, once all tasks blocked.
AfterEach = Callable[[], None]
#: Real seconds with every task blocked after which a run is taken to be stuck.
STALL_SECONDS = 10.0


class WorldStalled(RuntimeError):
    """Every task of the run, the driver's work included, waited with nothing left to
    wake it (see ``SteppedLoop``'s ``stall_seconds``)."""


class LoopFinished(RuntimeError):
    """The trio run ended (a task raised, or the loop was closed): ``crash`` says why."""


class _Stop:
    """Handed to the driver by ``close``: leave the loop."""


_STOP = _Stop()


class SteppedLoop:
    """``trio.run`` on a mock clock, driven by :meth:`run` from synchronous code.

    Use from the thread that created it. Always :meth:`close` it (a greenlet left
    suspended inside a trio run is torn down only by the garbage collector).
    ``on_close`` runs inside the run before the world stops: at :meth:`close`, or when
    a task raised and trio cancels the others.
    """

    def __init__(
        self,
        setup: Setup,
        *,
        clock: trio.testing.MockClock,
        after_each: AfterEach,
        on_close: Callable[[], None],
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.crash: Exception | None = None
        # Where a mock clock would autojump (every task blocked for ``stall_seconds``
        # of real time) the run is stuck instead: the work in progress is cancelled
        # and answered with WorldStalled. Without this the thread would sleep in the
        # run's I/O wait for ever. (A private hook of MockClock, which is final; trio is
        # pinned.)
        clock.autojump_threshold = stall_seconds
        clock._autojump = self._stalled  # type: ignore[method-assign]
        self._stall_seconds = stall_seconds
        self._work_scope: trio.CancelScope | None = None
        self._setup = setup
        self._clock = clock
        self._after_each = after_each
        self._on_close = on_close
        self._stop: trio.Event | None = None
        self._host = greenlet.getcurrent()
        self._loop = greenlet.greenlet(self._run_trio, parent=self._host)
        # Runs until the driver first hands control back: the world is set up.
        self._switch_into_loop(None)

    @property
    def finished(self) -> bool:
        return bool(self._loop.dead)

    def run(self, work: Work) -> None:
        """Run ``work`` (a function, or one returning an awaitable to await) inside the
        loop, then let the loop run until every task is blocked. Raises what the work
        raised, or :class:`LoopFinished` if the loop is gone."""
        if self.finished:
            raise LoopFinished("the trio run has ended") from self.crash
        answer = self._switch_into_loop(work)
        if isinstance(answer, _Stop):
            raise LoopFinished("the trio run ended during this work") from self.crash
        if isinstance(answer, Exception):
            raise answer

    def close(self) -> None:
        """Run ``on_close`` inside the loop, stop the world and end the run. Raises
        :class:`LoopFinished` if the run failed while stopping (a stuck shutdown
        included)."""
        if not self.finished:
            self._switch_into_loop(_STOP)
            if self.crash is not None:
                raise LoopFinished("the trio run failed while stopping") from self.crash

    # -- inside the greenlet -------------------------------------------------------

    def _run_trio(self, _: object) -> _Stop:
        try:
            trio.run(self._main, clock=self._clock)
        except Exception as exc:  # handed to the caller through ``crash``
            self.crash = exc
        # Returning ends the greenlet and resumes the host with this value; what is
        # not an Exception (KeyboardInterrupt, SystemExit) is raised in the host.
        return _STOP

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            try:
                await self._setup(nursery)
                nursery.start_soon(self._drive)
                await self._stop.wait()
            except BaseException:
                # A task of the world raised, so trio is cancelling the others: what
                # they still do shielded (clean-ups awaiting the simulated Redis) must
                # get its answers as at a close, or the run waits stall_seconds of real
                # time for nothing before it ends with the task's error.
                self._on_close()
                raise
            nursery.cancel_scope.cancel()

    async def _drive(self) -> None:
        assert self._stop is not None
        await trio.testing.wait_all_tasks_blocked()  # the world is set up
        answer: Exception | None = None
        while True:
            work = self._switch_to_host(answer)
            if isinstance(work, _Stop):
                self._on_close()
                self._stop.set()
                return
            answer = None
            try:
                with trio.CancelScope() as self._work_scope:
                    result = work()
                    if result is not None:
                        await result
                if self._work_scope.cancelled_caught:
                    answer = self._stall()
            except Exception as exc:
                answer = exc
            finally:
                self._work_scope = None
            await trio.testing.wait_all_tasks_blocked()
            if answer is None:
                try:
                    self._after_each()
                except Exception as exc:
                    answer = exc

    def _stalled(self) -> None:
        # Called by trio's run loop, outside any task, when every task has been
        # blocked for stall_seconds of real time.
        if self._work_scope is not None:
            self._work_scope.cancel()
        else:  # stuck outside any work (a shutdown): end the run, uncleanly
            raise self._stall()

    def _stall(self) -> WorldStalled:
        return WorldStalled(
            f"every task waited for {self._stall_seconds:g} s of real time with nothing "
            "left to wake it: a deadlock in the simulated world"
        )

    # -- switching ---------------------------------------------------------------

    def _switch_into_loop(self, value: object) -> Any:
        return _switch(self._loop, value)

    def _switch_to_host(self, value: object) -> Any:
        return _switch(self._host, value)


def _switch(target: greenlet.greenlet, value: object) -> Any:
    """Switch to ``target``; back here, put this greenlet's trio context back."""
    saved = dict(vars(GLOBAL_RUN_CONTEXT))
    vars(GLOBAL_RUN_CONTEXT).clear()
    wakeup_fd = _set_signal_wakeup_fd(-1)
    try:
        return target.switch(value)
    finally:
        _set_signal_wakeup_fd(wakeup_fd)
        vars(GLOBAL_RUN_CONTEXT).clear()
        vars(GLOBAL_RUN_CONTEXT).update(saved)


def _set_signal_wakeup_fd(fd: int) -> int:
    """Each trio run on the main thread claims the signal wakeup fd (and warns if it
    was taken): it is part of the context a switch swaps. Elsewhere there is none."""
    if threading.current_thread() is not threading.main_thread():
        return -1
    return signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
