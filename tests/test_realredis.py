"""The real-Redis tier: history merge, plans, and the short profile of each backend."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from streamcheck.model import (
    AbortRequested,
    Chunk,
    Delivered,
    EmitKind,
    Emitted,
    Gap,
    GapReason,
    Healed,
    OpOutcome,
    Record,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    WritesLost,
    check,
)
from streamcheck.properties._replay import record_to_json
from streamcheck.properties.realredis._agent import Action, AgentPlan
from streamcheck.properties.realredis._harness import FAULTS, PROFILES, Backend, run_tier
from streamcheck.properties.realredis._merge import (
    MalformedHistoryLine,
    merge_histories,
    read_agent_history,
    record_from_json,
)
from streamcheck.properties.realredis._plan import Kill, Workload, draw_plans
from streamcheck.properties.realredis._servers import have_redis_binaries

needs_redis = pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH")


def opened(session: str, replica: str, t: float) -> SessionOpened:
    return SessionOpened(
        time=t,
        session=session,
        stream_id="s0",
        generation="g1",
        user_id="u",
        owner_id="u",
        replica=replica,
        mode=SessionMode.RESUME,
        first_seq=3,
        snapshot_seqs=(0, 1, 2),
    )


def test_every_record_kind_survives_json() -> None:
    records: list[Record] = [
        opened("s1", "r0", 1.0),
        Emitted(
            time=2.0,
            stream_id="s0",
            generation="g1",
            replica="r0",
            kind=EmitKind.CHUNK,
            payload_digest="d",
            outcome=OpOutcome.OK,
            seq=3,
        ),
        Delivered(
            time=3.0,
            session="s1",
            event=Chunk(seq=3, generation="g1", data={"a": [1]}),
            payload_digest="d",
        ),
        Delivered(
            time=3.5,
            session="s1",
            event=Gap(first_seq=4, last_seq=9, generation="g1", reason=GapReason.WRITES_LOST),
            payload_digest=None,
        ),
        AbortRequested(
            time=4.0,
            stream_id="s0",
            generation=None,
            replica="r1",
            user_id="u",
            acknowledged=False,
            outcome=OpOutcome.INDETERMINATE,
        ),
        SessionClosed(time=5.0, session="s1", reason=SessionEnd.DETACHED),
        WritesLost(time=6.0, writes=2),
        Healed(time=7.0),
    ]
    for record in records:
        assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record


def test_a_line_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(MalformedHistoryLine):
        record_from_json({"type": "Nope"})
    with pytest.raises(MalformedHistoryLine):
        record_from_json({"type": "Chunk", "seq": 1, "generation": "g", "data": None})


def test_a_torn_last_line_is_dropped_but_a_torn_middle_line_is_an_error(tmp_path: Path) -> None:
    good = json.dumps(record_to_json(Healed(time=1.0)))
    path = tmp_path / "r0.jsonl"
    path.write_text(f"{good}\n{good[:10]}")
    assert read_agent_history(path) == [Healed(time=1.0)]
    path.write_text(f"{good[:10]}\n{good}\n")
    with pytest.raises(ValueError):
        read_agent_history(path)


def test_merge_orders_by_time_and_closes_the_sessions_of_a_killed_replica() -> None:
    r0: list[Record] = [
        opened("r0-s1", "r0", 1.0),
        SessionClosed(time=4.0, session="r0-s1", reason=SessionEnd.TERMINAL),
    ]
    r1: list[Record] = [opened("r1-s1", "r1", 2.0), opened("r1-s2", "r1", 6.0)]
    history = merge_histories([r0, r1], killed_at={"r1": 3.0})
    assert [r.index for r in history.records] == list(range(len(history.records)))
    times = [r.time for r in history.records]
    assert times == sorted(times)
    crashed = [
        r
        for r in history.records
        if isinstance(r, SessionClosed) and r.reason is SessionEnd.REPLICA_CRASHED
    ]
    # The session opened after the kill belongs to a restarted agent: left alone.
    assert [(c.session, c.time) for c in crashed] == [("r1-s1", 3.0)]


def test_plans_resume_every_client_of_a_killed_replica_elsewhere() -> None:
    workload = Workload(replicas=3, streams=6, chunks=5, chunk_interval_s=0.05, duration_s=2.0)
    kill = Kill(replica=1, at=0.8)
    plans = draw_plans(workload, random.Random(3), kill=kill)
    assert all(a.at < kill.at for a in plans[1])
    served = {a.stream for a in plans[1] if a.op in ("subscribe", "resume")}
    resumed_later = {a.stream for a in plans[2] if a.op == "resume" and a.at == kill.at + 0.3}
    assert served and served <= resumed_later


def test_agent_plans_round_trip_and_reject_unknown_actions() -> None:
    plan = AgentPlan(
        replica="r0",
        incarnation=1,
        redis_url="redis://127.0.0.1:1",
        cluster=False,
        start_at=10.0,
        end_after=2.0,
        heal_for=5.0,
        actions=(Action(at=0.1, op="create", stream="s0"),),
    )
    assert AgentPlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match="unknown action"):
        Action(at=0.0, op="explode", stream="s0")


def _assert_clean(backend: Backend) -> None:
    import trio

    lines: list[str] = []
    figures = trio.run(
        lambda: run_tier(
            backend,
            PROFILES["short"],
            seed=1,
            on_run=lambda r: lines.append(f"{r.fault}: {r.report.summary()} {r.agent_failures}"),
        )
    )
    assert [f.fault for f in figures] == list(FAULTS[backend])
    for f in figures:
        assert f.runs == 1 and f.events > 0, "\n".join(lines)
        assert not f.anomalies and not f.agent_failures, "\n".join(lines)
        if f.fault.value != "none":
            assert f.faults_injected > 0, f.fault


@pytest.mark.redis
@needs_redis
def test_short_profile_on_redis_finds_nothing_under_every_fault() -> None:
    _assert_clean(Backend.REDIS)


@pytest.mark.cluster
@needs_redis
def test_short_profile_on_redis_cluster_finds_nothing_under_every_fault() -> None:
    _assert_clean(Backend.CLUSTER)


def test_a_clean_history_from_two_agents_is_judged_clean() -> None:
    # The merged history is what the checker judges: a plain one passes.
    r0: list[Record] = [
        Emitted(
            time=1.0,
            stream_id="s0",
            generation="g1",
            replica="r0",
            kind=EmitKind.CHUNK,
            payload_digest="x",
            outcome=OpOutcome.OK,
            seq=0,
        )
    ]
    assert check(merge_histories([r0, []])).ok


def test_an_emit_that_never_completed_becomes_indeterminate(tmp_path: Path) -> None:
    def emit(seq: int | None, outcome: OpOutcome, digest: str) -> Emitted:
        return Emitted(
            time=1.0,
            stream_id="s0",
            generation="g1",
            replica="r0",
            kind=EmitKind.CHUNK,
            payload_digest=digest,
            outcome=outcome,
            seq=seq,
        )

    lines = [
        {"invoked": record_to_json(emit(None, OpOutcome.INDETERMINATE, "a"))},
        record_to_json(emit(0, OpOutcome.OK, "a")),
        {"invoked": record_to_json(emit(None, OpOutcome.INDETERMINATE, "b"))},
    ]
    path = tmp_path / "r0.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = read_agent_history(path)
    assert [(r.payload_digest, r.outcome) for r in records if isinstance(r, Emitted)] == [
        ("a", OpOutcome.OK),
        ("b", OpOutcome.INDETERMINATE),
    ]
