"""Judging refusals: an implementation may say no, but only when it is true.

A protocol agent reports a call the implementation declined on purpose, with its word
(:class:`~streamcheck.model._history.CallRefused`). Three words are judged against what
the history proves about the stream over the call, conservatively (a refusal is false
only when no ordering of the concurrent calls could make it true):

* ``finished``, ``absent`` and (to the stream's owner) ``denied`` are false when the
  turn had certainly started before the call began (its create had answered) and
  nothing could have ended it before the answer came: no terminal or abort of it had
  started, its generator had not been told to stop, no newer turn had been created, and
  the storage had not lost writes. ``denied`` counts as ``absent`` for the owner
  because an implementation may hide whether a stream exists from whoever is not its
  owner, and so answer both the same way; to anyone else it is always true.

A turn that ended may be answered either way: keeping a finished turn readable is a
promise some implementations make and others do not, so neither answer is judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamcheck.model._anomalies import Anomaly, AnomalyKind
from streamcheck.model._history import (
    AbortRequested,
    CallRefused,
    EmitKind,
    Emitted,
    GenerationStarted,
    GeneratorStopped,
    OpOutcome,
    Record,
    RefusalReason,
    WritesLost,
)


@dataclass(slots=True)
class _Turn:
    started: GenerationStarted
    started_index: int
    #: The earliest any call that could have ended the turn began.
    ended_by: float = math.inf


@dataclass(slots=True)
class _Stream:
    owner: str | None = None
    turns: list[_Turn] = field(default_factory=list)
    #: The earliest an abort of the stream began (it may end whichever turn is live).
    first_abort: float = math.inf


def judge_refusals(records: Sequence[Record], out: list[Anomaly]) -> None:
    refusals = [(i, r) for i, r in enumerate(records) if isinstance(r, CallRefused)]
    if not refusals:
        return
    streams = _streams(records)
    storage_lost_at = next((r.time for r in records if isinstance(r, WritesLost)), math.inf)
    for i, refusal in refusals:
        stream = streams.get(refusal.stream_id, _Stream())
        anomaly = _false(refusal, stream, storage_lost_at)
        if anomaly is not None:
            last_good, text = anomaly
            out.append(
                Anomaly(
                    kind=AnomalyKind.FALSE_REFUSAL,
                    session=None,
                    stream_id=refusal.stream_id,
                    generation=refusal.generation,
                    seq=None,
                    first_bad=i,
                    last_good=last_good,
                    explanation=f"replica {refusal.replica} refused {refusal.call} on stream "
                    f"{refusal.stream_id} for user {refusal.user_id} as {refusal.word!r} "
                    f"at t={refusal.time:.3f}, {text}",
                )
            )


def _streams(records: Sequence[Record]) -> dict[str, _Stream]:
    streams: dict[str, _Stream] = {}
    by_generation: dict[tuple[str, str], _Turn] = {}
    for i, record in enumerate(records):
        if isinstance(record, GenerationStarted):
            stream = streams.setdefault(record.stream_id, _Stream())
            stream.owner = stream.owner or record.user_id
            began = _began(record.invoked, record.time)
            for earlier in stream.turns:
                earlier.ended_by = min(earlier.ended_by, began)
            turn = _Turn(record, i)
            stream.turns.append(turn)
            by_generation[(record.stream_id, record.generation)] = turn
        elif isinstance(record, Emitted):
            ended = by_generation.get((record.stream_id, record.generation))
            ends = record.kind is not EmitKind.CHUNK and record.outcome is not OpOutcome.FAIL
            if ended is not None and ends:
                ended.ended_by = min(ended.ended_by, _began(record.invoked, record.time))
        elif isinstance(record, AbortRequested) and record.outcome is not OpOutcome.FAIL:
            stream = streams.setdefault(record.stream_id, _Stream())
            stream.first_abort = min(stream.first_abort, _began(record.invoked, record.time))
        elif isinstance(record, GeneratorStopped):
            stopped = by_generation.get((record.stream_id, record.generation))
            if stopped is not None:
                stopped.ended_by = min(stopped.ended_by, record.time)
    return streams


def _began(invoked: float | None, answered: float) -> float:
    return answered if invoked is None else invoked


def _false(
    refusal: CallRefused, stream: _Stream, storage_lost_at: float
) -> tuple[int | None, str] | None:
    """Why ``refusal`` is false (the last good record and a sentence), or ``None``."""
    if refusal.reason is RefusalReason.OTHER:
        return None
    if refusal.reason is RefusalReason.DENIED and refusal.user_id != stream.owner:
        return None
    if not refusal.storage_reliable:
        return None
    if storage_lost_at <= refusal.time:
        return None
    started = [t for t in stream.turns if t.started.time <= refusal.invoked]
    if refusal.generation is not None:
        started = [t for t in started if t.started.generation == refusal.generation]
    if not started:
        return None
    turn = started[-1]
    if min(turn.ended_by, stream.first_abort) <= refusal.time:
        return None
    owner = " to its owner" if refusal.reason is RefusalReason.DENIED else ""
    return (
        turn.started_index,
        f"{owner} while turn {turn.started.generation} was live: it started at "
        f"t={turn.started.time:.3f}, before the call, and nothing could have ended it "
        "before the answer",
    )
