"""Refusals are judged against the turn's state over the call (model/_refusals.py).

A protocol agent may answer "finished", "absent" or "denied"; each test builds the
smallest history in which the answer is true or provably false, including through the
transcript reader, which supplies the earliest time each call can have started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamcheck.model import (
    AbortRequested,
    AnomalyKind,
    CallRefused,
    EmitKind,
    Emitted,
    GenerationStarted,
    GeneratorStopped,
    OpOutcome,
    Record,
    RefusalReason,
    WritesLost,
    check,
)
from streamcheck.properties.protocol import Action, Capabilities, Op, read_transcript
from streamcheck.properties.protocol._messages import hello_line

STARTED = GenerationStarted(
    time=1.0, stream_id="s0", generation="g1", user_id="owner", replica="r0", start_seq=0
)


def _refused(
    word: str,
    *,
    call: str = "subscribe",
    user: str = "owner",
    invoked: float = 2.0,
    answered: float = 2.1,
    generation: str | None = None,
    reliable: bool = True,
) -> CallRefused:
    try:
        reason = RefusalReason(word)
    except ValueError:
        reason = RefusalReason.OTHER
    return CallRefused(
        time=answered,
        invoked=invoked,
        stream_id="s0",
        generation=generation,
        call=call,
        user_id=user,
        replica="r1",
        reason=reason,
        word=word,
        storage_reliable=reliable,
    )


def _kinds(*records: Record) -> list[AnomalyKind]:
    return [a.kind for a in check(list(records)).anomalies]


def _done(invoked: float, answered: float) -> Emitted:
    return Emitted(
        time=answered,
        invoked=invoked,
        stream_id="s0",
        generation="g1",
        replica="r0",
        kind=EmitKind.DONE,
        payload_digest="d",
        outcome=OpOutcome.OK,
        seq=0,
    )


@pytest.mark.parametrize("word", ["absent", "finished"])
def test_a_live_turn_is_neither_absent_nor_finished(word: str) -> None:
    report = check([STARTED, _refused(word)])
    assert [a.kind for a in report.anomalies] == [AnomalyKind.FALSE_REFUSAL]
    assert "while turn g1 was live" in report.anomalies[0].explanation
    assert report.anomalies[0].last_good == 0


def test_a_call_that_began_before_the_create_answered_may_find_nothing() -> None:
    early = _refused("absent", invoked=0.5, answered=1.5)
    assert _kinds(STARTED, early) == []


def test_a_terminal_begun_before_the_answer_makes_finished_true() -> None:
    # The done was answered after the refusal, but it had started before the answer.
    assert _kinds(STARTED, _refused("finished"), _done(invoked=2.05, answered=2.2)) == []
    # A done begun only after the answer proves nothing for it.
    assert _kinds(STARTED, _refused("finished"), _done(invoked=2.2, answered=2.3)) == [
        AnomalyKind.FALSE_REFUSAL
    ]


def test_an_abort_a_stop_or_a_newer_turn_may_each_have_ended_the_turn() -> None:
    abort = AbortRequested(
        time=2.5,
        invoked=1.9,
        stream_id="s0",
        generation=None,
        replica="r2",
        user_id="owner",
        acknowledged=True,
        outcome=OpOutcome.OK,
    )
    stopped = GeneratorStopped(time=2.05, stream_id="s0", generation="g1")
    newer = GenerationStarted(
        time=2.4,
        invoked=1.95,
        stream_id="s0",
        generation="g2",
        user_id="owner",
        replica="r0",
        start_seq=5,
    )
    assert _kinds(STARTED, _refused("finished"), abort) == []
    assert _kinds(STARTED, stopped, _refused("finished")) == []
    refused_emit = _refused("finished", call="emit", generation="g1")
    assert _kinds(STARTED, refused_emit, newer) == []


def test_an_emit_is_judged_on_its_own_turn() -> None:
    emit = _refused("finished", call="emit", generation="g1")
    assert _kinds(STARTED, emit) == [AnomalyKind.FALSE_REFUSAL]
    other_turn = _refused("finished", call="emit", generation="g0")
    assert _kinds(STARTED, other_turn) == []


def test_denied_is_false_only_for_the_owner_of_a_live_turn() -> None:
    assert _kinds(STARTED, _refused("denied")) == [AnomalyKind.FALSE_REFUSAL]
    assert _kinds(STARTED, _refused("denied", user="someone-else")) == []
    # Before the turn exists an implementation may hide that from anyone, owner too.
    assert _kinds(STARTED, _refused("denied", invoked=0.5, answered=1.5)) == []


def test_lost_storage_or_an_unknown_word_is_not_judged() -> None:
    assert _kinds(STARTED, _refused("absent", reliable=False)) == []
    assert _kinds(STARTED, WritesLost(time=1.5, writes=3), _refused("absent")) == []
    assert _kinds(STARTED, _refused("busy")) == []
    assert _kinds(STARTED, _refused("denied", reliable=False)) == []


def test_the_transcript_times_a_refusal_from_the_plan(tmp_path: Path) -> None:
    """Plan mode: a subscribe has no ``invoked`` line, so the plan's time (less the
    timer slack) is the earliest it began; an ``absent`` while the create had answered
    is then provably false."""
    actions = {
        a.id: a
        for a in (
            Action(id="c", op=Op.CREATE, stream="s0", at=0.0, user="u", turn="s0.t1"),
            Action(id="sub", op=Op.SUBSCRIBE, stream="s0", at=0.5, user="u", session="c1"),
            Action(id="late", op=Op.SUBSCRIBE, stream="s0", at=0.01, user="u", session="c2"),
            Action(id="leave", op=Op.DETACH, stream="s0", at=0.6, session="c9"),
        )
    }
    hello = json.loads(hello_line("refuser", "0", Capabilities()))
    lines = [
        hello,
        {"type": "ready"},
        {"type": "invoked", "t": 100.0, "action": "c"},
        {"type": "result", "t": 100.1, "action": "c", "outcome": "ok", "generation": "g1"},
        {"type": "result", "t": 100.15, "action": "late", "outcome": "refused",
         "reason": "absent"},
        {"type": "result", "t": 100.6, "action": "sub", "outcome": "refused",
         "reason": "absent"},
        {"type": "result", "t": 100.7, "action": "leave", "outcome": "refused",
         "reason": "absent"},
    ]  # fmt: skip
    path = tmp_path / "r0.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = read_transcript(path, "r0", actions, plan_start=100.0).records
    refusals = [r for r in records if isinstance(r, CallRefused)]
    assert [r.invoked for r in refusals] == pytest.approx([100.0, 100.49, 100.59])
    # A detach's "absent" names the agent's own session, not the stream: not judged.
    assert refusals[-1].reason is RefusalReason.OTHER
    report = check(records)
    assert [(a.kind, a.first_bad) for a in report.anomalies] == [(AnomalyKind.FALSE_REFUSAL, 2)]
    # Without the plan's start nothing says when the subscribe began: not judged.
    assert check(read_transcript(path, "r0", actions).records).ok
