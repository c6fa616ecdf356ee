"""An abort acknowledged to the user is the terminal readers see (issue 17, part 2).

Generator on replica A, reader on B, abort pressed on C; the generator reacts to the
abort at once with its own done (or error). The abort is slowed between telling the
generator and publishing its final event, so the generator's reaction always comes
first: the fix (claim the turn in the publish fence, then signal) refuses it; the old
order (the ``abort-signalled-before-fence`` canary) lets it win.
"""

from __future__ import annotations

import pytest
import trio

from streamcheck.impl import AbortOutcome, GenerationJobManager, JobStatus, ReplicaParts
from streamcheck.model import Done, JSONValue
from streamcheck.properties.canaries import Canary, replica_build
from tests.backends import FAST, collect, delta, replicas

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def _slow_content_reads(manager: GenerationJobManager, delay_s: float = 0.2) -> None:
    """Delay the abort between its signal and its final event's publish."""
    read = manager.job_store.get_content_parts

    async def slow(stream_id: str) -> list[JSONValue] | None:
        await trio.sleep(delay_s)
        return await read(stream_id)

    manager.job_store.get_content_parts = slow  # type: ignore[method-assign]


async def _race(
    kind: str,
    request: pytest.FixtureRequest,
    *,
    parts: ReplicaParts,
    error: bool,
    abort_delay_s: float = 0.2,
) -> tuple[AbortOutcome, object, list[object], JobStatus | None]:
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    prefix = request.getfixturevalue("key_prefix") if kind == "redis" else ""
    async with replicas(kind, 3, url=url, prefix=prefix, parts=[parts] * 3) as (a, b, c):
        _slow_content_reads(c, abort_delay_s)
        job = await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("partial "))
        reaction: list[object] = []

        async def generator_reacts() -> None:
            await job.aborted.wait()
            if error:
                reaction.append(await a.emit_error("s1", "stopped"))
                await a.complete_job("s1", error="stopped")
            else:
                reaction.append(await a.emit_done("s1", {"final": True}))
                await a.complete_job("s1")

        # Bounded as a whole: a generator never told to stop would wait for ever.
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(generator_reacts)
                result = await c.abort_job("s1", "u1")
        events = await collect(sub)
        stored = await b.get_job("s1")
        return result.outcome, events[-1], reaction, stored.status if stored else None


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("error", [False, True], ids=["done", "error"])
async def test_an_accepted_abort_beats_the_generators_reaction(
    kind: str, error: bool, request: pytest.FixtureRequest
) -> None:
    outcome, last, reaction, status = await _race(kind, request, parts=ReplicaParts(), error=error)
    assert outcome is AbortOutcome.ABORTED
    assert isinstance(last, Done) and isinstance(last.data, dict)
    assert last.data["aborted"] is True
    assert last.data["responseMessage"]["unfinished"] is True  # type: ignore[index,call-overload]
    assert reaction == [None]  # the generator's own terminal was refused
    assert status is JobStatus.ABORTED


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("error", [False, True], ids=["done", "error"])
async def test_a_silent_reader_waits_for_the_aborts_terminal(
    kind: str, error: bool, request: pytest.FixtureRequest
) -> None:
    # Found by a mixed foreign run (Python abort, Node generator and reader): the
    # generator, refused by the abort's claim, completed its job as aborted before the
    # abort had published its final event; the reader, silent past its idle probe, found
    # the job ended and nothing on the log, and made up a done from the job (the refused
    # done's stored payload, or none after a refused error). The abort's Done then came
    # at the same seq. The abort, slowed here for longer than the reader's idle probe
    # (FAST: 0.3 s), now records the end itself, after its terminal is on the log.
    delay_s = 4 * FAST.idle_probe_s
    outcome, last, reaction, status = await _race(
        kind, request, parts=ReplicaParts(), error=error, abort_delay_s=delay_s
    )
    assert outcome is AbortOutcome.ABORTED
    assert reaction == [None]
    assert isinstance(last, Done) and isinstance(last.data, dict), last
    assert last.data["aborted"] is True, last
    assert status is JobStatus.ABORTED


@pytest.mark.parametrize("kind", BACKENDS)
async def test_the_old_order_lets_the_generators_done_win(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # The canary restores the old order (and the old actor, which obeyed every signal);
    # this is the bug the test above guards against.
    parts = replica_build(frozenset({Canary.ABORT_SIGNALLED_BEFORE_FENCE})).parts
    outcome, last, reaction, _ = await _race(kind, request, parts=parts, error=False)
    assert outcome is AbortOutcome.ALREADY_TERMINAL
    assert isinstance(last, Done) and last.data == {"final": True}
    assert reaction != [None]
