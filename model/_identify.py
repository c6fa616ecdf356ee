"""Which event is this? Identifying one delivery before judging its place.

A delivered event is matched against what the generators emitted, in this order:

1. a **Failure** is the generation's emitted error if an OK ``Emitted`` of kind ERROR
   with the same digest sits at its seq (or an INDETERMINATE error has its digest);
   any other failure is a **synthetic terminal** ("producer lost", "generation
   superseded by a newer turn on this stream", a stored error copied with a new seq);
2. an event at a seq that was OK-emitted must come from the session's generation
   (else ``CROSS_GENERATION_LEAK``) with the same kind and payload digest (else
   ``CONTENT_MISMATCH``; the event still fills its slot);
3. an event at a seq nobody OK-emitted is fine if an INDETERMINATE emit of the
   generation had its kind and digest (it may have been published);
4. a **Done** left over is a synthetic terminal rebuilt from the stored final event:
   accepted if its digest equals the emitted Done's, or if no terminal was emitted, or
   (once Redis lost writes) if it is a done the generation tried to publish;
5. anything else is another generation's (by seq range) or a ``PHANTOM``.

Also here: the resume-snapshot rule, and how explanations name events and seqs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streamcheck.model._anomalies import AnomalyKind
from streamcheck.model._events import Done, Failure, Gap, SequencedEvent, StreamEvent
from streamcheck.model._history import EmitKind, Emitted, SessionMode, SessionOpened
from streamcheck.model._reference import (
    GenerationFacts,
    HistoryIndex,
    event_kind,
    expected_snapshot,
)


class Verdict(enum.Enum):
    REAL = "real"  # the emitted (or possibly emitted) event at its seq
    MISMATCH = "mismatch"  # the right slot with the wrong payload (reported)
    REJECTED = "rejected"  # not this session's event at all (reported); fills no slot
    SYNTHETIC = "synthetic"  # an acceptable synthetic terminal
    BAD_SYNTHETIC = "bad synthetic"  # a synthetic terminal with a wrong payload (reported)


@dataclass(frozen=True, slots=True)
class Identity:
    verdict: Verdict
    #: The anomaly to report (for MISMATCH, REJECTED and BAD_SYNTHETIC).
    kind: AnomalyKind | None = None
    #: Its explanation, to follow "session <name> ".
    text: str = ""


def seq_list(seqs: list[int] | tuple[int, ...], limit: int = 6) -> str:
    """``3, 4, 7`` (abbreviated after ``limit`` items)."""
    shown = ", ".join(str(s) for s in seqs[:limit])
    return shown if len(seqs) <= limit else f"{shown}, ... ({len(seqs)} in all)"


def what(event: StreamEvent) -> str:
    """``seq 7 (chunk)``, ``gap 3..5``: how explanations name an event."""
    if isinstance(event, Gap):
        return f"gap {event.first_seq}..{event.last_seq}"
    kind = event_kind(event)
    assert kind is not None
    return f"seq {event.seq} ({kind.value})"


_REAL = Identity(Verdict.REAL)
_SYNTHETIC = Identity(Verdict.SYNTHETIC)


def identify(
    index: HistoryIndex,
    gen: GenerationFacts | None,
    opened: SessionOpened,
    event: SequencedEvent,
    digest: str | None,
) -> Identity:
    """Identify ``event`` (already known to carry the session's generation label)."""
    stream, generation = opened.stream_id, opened.generation
    kind = event_kind(event)
    at = index.ok_by_seq.get((stream, event.seq))
    emitted: Emitted | None = None
    if at is not None:
        found = index.records[at]
        assert isinstance(found, Emitted)
        emitted = found
    if isinstance(event, Failure):
        if (
            emitted is not None
            and emitted.kind is EmitKind.ERROR
            and emitted.generation == generation
            and emitted.payload_digest == digest
        ):
            return _REAL
        if gen is not None and (EmitKind.ERROR, digest) in gen.indeterminate:
            return _REAL
        return _SYNTHETIC
    if emitted is not None:
        if emitted.generation != generation:
            if isinstance(event, Done) and emitted.payload_digest != digest:
                # A done rebuilt for this turn carries a made-up seq (its reader's
                # frontier), which a later turn may then allocate for real.
                rebuilt = _synthetic_done(gen, event, digest, writes_lost=bool(index.writes_lost))
                if rebuilt.verdict is Verdict.SYNTHETIC:
                    return rebuilt
            return Identity(
                Verdict.REJECTED,
                AnomalyKind.CROSS_GENERATION_LEAK,
                f"of generation {generation} received {what(event)}, which was emitted by "
                f"generation {emitted.generation}; a session sees only its own turn",
            )
        if emitted.kind is not kind or emitted.payload_digest != digest:
            return Identity(
                Verdict.MISMATCH,
                AnomalyKind.CONTENT_MISMATCH,
                f"received {what(event)} with payload {digest}, but the generator emitted a "
                f"{emitted.kind.value} with payload {emitted.payload_digest} at that seq",
            )
        return _REAL
    if gen is not None and kind is not None and (kind, digest or "") in gen.indeterminate:
        return _REAL
    if isinstance(event, Done):
        return _synthetic_done(gen, event, digest, writes_lost=bool(index.writes_lost))
    owner = index.owner_of_seq(stream, event.seq)
    if owner is not None and owner != generation:
        return Identity(
            Verdict.REJECTED,
            AnomalyKind.CROSS_GENERATION_LEAK,
            f"of generation {generation} received {what(event)}, a seq in the range of "
            f"generation {owner}; a session sees only its own turn",
        )
    return Identity(
        Verdict.REJECTED,
        AnomalyKind.PHANTOM,
        f"received {what(event)}, which no generator ever emitted (successfully or "
        f"indeterminately) on stream {stream}",
    )


def _synthetic_done(
    gen: GenerationFacts | None, event: Done, digest: str | None, *, writes_lost: bool
) -> Identity:
    real = gen.terminal if gen is not None else None
    if real is None or (real.kind is EmitKind.DONE and real.payload_digest == digest):
        return _SYNTHETIC
    if writes_lost and gen is not None and digest in gen.attempted_done_digests:
        # Redis lost writes: the terminal on the log, and the job's record of it, may be
        # gone, and the job may keep the final event of a done its generator tried to
        # publish (it is stored before the publish the fence refused).
        return _SYNTHETIC
    if real.kind is EmitKind.DONE:
        text = (
            f"received a done (seq {event.seq}) rebuilt with payload {digest}, but the "
            f"generation's emitted done had payload {real.payload_digest}"
        )
    else:
        text = (
            f"received a done (seq {event.seq}), but the generation ended with an error "
            f"(seq {real.seq}); a reader must see the error"
        )
    return Identity(Verdict.BAD_SYNTHETIC, AnomalyKind.CONTENT_MISMATCH, text)


def snapshot_problem(
    index: HistoryIndex, gen: GenerationFacts | None, opened: SessionOpened
) -> tuple[int, str] | None:
    """``(seq, explanation)`` if a resume's snapshot breaks the rule, else ``None``.

    The snapshot must list exactly the OK-emitted chunk seqs in
    ``[start_seq, first_seq)``, ascending. Seqs nobody OK-emitted are tolerated when
    the generation has INDETERMINATE chunk emits (the log may hold them).
    """
    if opened.mode is not SessionMode.RESUME and not opened.snapshot_seqs:
        return None
    got = opened.snapshot_seqs
    expected = expected_snapshot(gen, opened.first_seq)
    if got == expected:
        return None
    wanted, have = set(expected), set(got)
    may_exist = gen is not None and any(k is EmitKind.CHUNK for k, _ in gen.indeterminate)
    extra = [
        s
        for s in got
        if s not in wanted and not (may_exist and (opened.stream_id, s) not in index.ok_by_seq)
    ]
    missing = [s for s in expected if s not in have]
    in_order = list(got) == sorted(have)
    if not extra and not missing and in_order:
        return None  # only possibly-published INDETERMINATE chunks were added
    parts = []
    if missing:
        parts.append(f"lacks chunk seqs {seq_list(missing)}")
    if extra:
        parts.append(f"holds seqs {seq_list(extra)} that are not this generation's chunks")
    if not in_order:
        parts.append("lists its seqs out of order or twice")
    return (
        (missing or extra or list(got))[0],
        f"resumed at seq {opened.first_seq} with a snapshot that {' and '.join(parts)}; "
        "it must fold exactly the emitted chunks before the resume point",
    )
