"""The real-Redis tier: history merge, plans, and the short profile of each backend, whose
agents are streamcheck's own, driven through the replica protocol."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

import streamcheck
from streamcheck.model import (
    AnomalyKind,
    EmitKind,
    Emitted,
    OpOutcome,
    Record,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    check,
)
from streamcheck.properties.protocol import Op
from streamcheck.properties.protocol._messages import ATTACH_OPS
from streamcheck.properties.realredis._harness import (
    FAULTS,
    PROFILES,
    Backend,
    FaultKind,
    run_once,
    run_tier,
)
from streamcheck.properties.realredis._merge import merge_histories
from streamcheck.properties.realredis._plan import Kill, Workload, draw_plans
from streamcheck.properties.realredis._servers import have_redis_binaries
from tests.backends import NEEDS_GLIDE

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
    served = {a.stream for a in plans[1] if a.op in ATTACH_OPS}
    resumed_later = {a.stream for a in plans[2] if a.op is Op.RESUME and a.at == kill.at + 0.3}
    assert served and served <= resumed_later


def _assert_clean(backend: Backend, faults: tuple[FaultKind, ...] | None = None) -> None:
    import trio

    chosen = faults if faults is not None else FAULTS[backend]
    lines: list[str] = []
    figures = trio.run(
        lambda: run_tier(
            backend,
            PROFILES["short"],
            seed=1,
            faults=chosen,
            on_run=lambda r: lines.append(f"{r.fault}: {r.report.summary()} {r.agent_failures}"),
        )
    )
    assert [f.fault for f in figures] == list(chosen)
    for f in figures:
        assert f.runs == 1 and f.events > 0, "\n".join(lines)
        assert not f.anomalies and not f.agent_failures, "\n".join(lines)
        if f.fault.value != "none":
            assert f.faults_injected > 0, f.fault


#: On valkey-glide (the agents inherit STREAMCHECK_REDIS_CLIENT) the suite runs the faults
#: that reach what differs between the clients: dropped and killed connections, a frozen
#: and a restarted server, failover and slot migration. The other faults (latency, a
#: blackhole, a slow reader, a killed agent) act above the client. Each fault costs about
#: 12 s, so this keeps the glide variants to about 1.5 minutes; the whole tier on glide is
#: `STREAMCHECK_REDIS_CLIENT=glide streamcheck run --backend redis|cluster`.
GLIDE_FAULTS = {
    Backend.REDIS: (FaultKind.CUT, FaultKind.PUBSUB_KILL, FaultKind.PAUSE, FaultKind.RESTART),
    Backend.CLUSTER: (
        FaultKind.PUBSUB_KILL,
        FaultKind.CLUSTER_FAILOVER,
        FaultKind.SLOT_MIGRATION,
    ),
}


@pytest.mark.redis
@needs_redis
def test_short_profile_on_redis_finds_nothing_under_every_fault() -> None:
    _assert_clean(Backend.REDIS)


@pytest.mark.cluster
@needs_redis
def test_short_profile_on_redis_cluster_finds_nothing_under_every_fault() -> None:
    _assert_clean(Backend.CLUSTER)


@pytest.mark.redis
@needs_redis
@NEEDS_GLIDE
def test_short_profile_on_redis_with_glide_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCHECK_REDIS_CLIENT", "glide")
    _assert_clean(Backend.REDIS, GLIDE_FAULTS[Backend.REDIS])


@pytest.mark.cluster
@needs_redis
@NEEDS_GLIDE
def test_short_profile_on_redis_cluster_with_glide_finds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMCHECK_REDIS_CLIENT", "glide")
    _assert_clean(Backend.CLUSTER, GLIDE_FAULTS[Backend.CLUSTER])


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


SEQLESS_AGENT = [sys.executable, str(Path(__file__).parent / "agents" / "seqless.py")]


@pytest.mark.redis
@needs_redis
@pytest.mark.parametrize("drop", [0, 9])
def test_an_implementation_without_seqs_is_judged_by_the_harness_payload_ids(
    tmp_path: Path, drop: int
) -> None:
    import trio

    # streamcheck's own agent behind an adapter that hides every seq and delivers text.
    command = [*SEQLESS_AGENT, "--drop", str(drop)]
    result = trio.run(
        lambda: run_once(
            Backend.REDIS, FaultKind.NONE, PROFILES["short"], 1, tmp_path, commands=[command]
        )
    )
    assert not result.agent_failures, result.agent_failures
    assert result.implementation == f"streamcheck-python-seqless {streamcheck.__version__}"
    assert "typed gap events" in result.not_exercised
    assert result.events > 0
    if drop:
        assert AnomalyKind.SKIPPED_WITHOUT_GAP in result.report.kinds(), result.report.summary()
    else:
        assert result.report.ok, result.report.summary()


LATE_AGENT = [sys.executable, str(Path(__file__).parent / "agents" / "late.py")]


@pytest.mark.redis
@needs_redis
def test_a_plan_carried_out_late_is_judged_after_it_ends(tmp_path: Path) -> None:
    import trio

    # Every action 6.5 s late: three of the four turns end after the planned heal window
    # (7.5 s after t=0), so readers judged then still wait for terminals nobody has written
    # (as with Durable Streams' file store on a loaded machine). The heal window must
    # follow the plan's last answer instead.
    late_s = 6.5
    profile = PROFILES["short"]
    command = [*LATE_AGENT, "--late", str(late_s)]
    result = trio.run(
        lambda: run_once(Backend.REDIS, FaultKind.NONE, profile, 1, tmp_path, commands=[command])
    )
    assert not result.agent_failures, result.agent_failures
    assert result.report.ok, result.report.summary()
    assert result.events > 0
    # The last planned action cannot be answered before its time plus the delay.
    assert result.plan_late_s >= late_s - 0.05, result.plan_late_s
