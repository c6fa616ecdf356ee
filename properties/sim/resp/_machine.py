"""The state machine for foreign replicas, its campaign, replays and minimization.

The rules draw what the replicas are asked to do (``do`` lines) and every step of the
simulated Redis behind the RESP front (which pending command executes, which delivery is
made, which message is lost, which connection is cut, when real time passes for the
replicas' timers). Faults are switched on per example (swarm testing). Each example starts
its agents afresh; teardown heals the world and judges the whole history (safety and
liveness) with the model's checker.

Hypothesis does not shrink here: an example costs a second or more of real time, and the
decision list is shortened afterwards by deletion replays
(:func:`~streamcheck.properties._minimize.minimize_decisions`). Agents are real processes
whose timing the harness does not control, so one replay that shows the first anomaly's
class proves little: a candidate is kept only when it reproduces by the
:class:`ReproductionRule` (by default at least 2 of 3 replays), otherwise a race that the
decisions do not hold shrinks to a list that seldom fails. A replay file is judged by how
often it reproduces: ``deterministic: yes`` when every replay's history is the same,
otherwise "reproduced K of N replays".
"""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    precondition,
    rule,
)

from streamcheck.model import AnomalyKind, CheckReport
from streamcheck.properties._minimize import minimize_decisions
from streamcheck.properties._replay import history_to_json
from streamcheck.properties._simulation import Decision
from streamcheck.properties.report import TIMELINE_FILENAME, write_timeline
from streamcheck.properties.sim.resp._simulation import ForeignSimulation, Judged

__all__ = [
    "ForeignCampaign",
    "ForeignFault",
    "ForeignMachine",
    "ReplayVerdict",
    "foreign_machine_for",
    "replay_foreign",
    "run_foreign_campaign",
]

REPLAY_SCHEMA: Final = "streamcheck.foreign-replay/1"
STREAMS = st.sampled_from(("s0", "s1"))
REPLICA = st.integers(0, 7)
PICK = st.integers(0, 15)
SEEDS = st.integers(0, 2**16 - 1)


#: The decisions that are faults (the rest ask replicas to act or release steps in order).
FAULT_DECISIONS: Final = frozenset(
    {"drop", "lossy_emit", "disconnect", "wait", "failover", "failover_after_emit"}
)


class ForeignFault(enum.Enum):
    DROP = "drop"
    CUT = "cut"
    #: Real time passes for the replicas' timers mid-example (``wait``); every example's
    #: heal phase lets them fire anyway.
    CLOCK = "clock"
    #: The primary fails over to a replica that may lack acknowledged writes.
    FAILOVER = "failover"


@dataclass
class _Failure:
    decisions: list[Decision]
    report: CheckReport | None
    judged: Judged | None
    crash: str | None = None


class ForeignMachine(RuleBasedStateMachine):
    commands: ClassVar[list[list[str]]] = []
    quiet_s: ClassVar[float] = 0.02
    #: The first failing example (Hypothesis stops there: no shrinking).
    failure: ClassVar[_Failure | None] = None
    examples: ClassVar[int] = 0
    rule_steps: ClassVar[int] = 0
    decisions_made: ClassVar[int] = 0
    #: The fault decisions the rules made, by name (what a campaign exercised).
    faults_made: ClassVar[Counter[str]]
    #: Seconds in the rules (decisions), in healing and judging, and starting agents.
    busy_s: ClassVar[float] = 0.0
    heal_s: ClassVar[float] = 0.0
    start_s: ClassVar[float] = 0.0
    late_activity: ClassVar[int] = 0
    never_quiet: ClassVar[int] = 0
    quiet_total_s: ClassVar[float] = 0.0
    waited_s: ClassVar[float] = 0.0
    advanced_s: ClassVar[float] = 0.0

    #: Called with the number of examples started so far, before each example.
    on_example: ClassVar[Callable[[int], None] | None] = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.examples += 1
        if cls.on_example is not None:
            cls.on_example(cls.examples)
        self.faults: frozenset[ForeignFault] = frozenset()
        starting = time.monotonic()
        self.sim = ForeignSimulation(cls.commands, quiet_s=cls.quiet_s)
        self.sim.start()
        cls.start_s += time.monotonic() - starting
        self._rules_started = time.monotonic()
        self._decided = 0

    def _do(self, name: str, **args: Any) -> None:
        decision = Decision(name, dict(args))
        note(str(decision))
        self.sim.apply(decision)

    #: The fault families examples may switch on (all by default).
    allowed_faults: ClassVar[frozenset[ForeignFault]] = frozenset(ForeignFault)

    @initialize(faults=st.frozensets(st.sampled_from(ForeignFault)))
    def choose_faults(self, faults: frozenset[ForeignFault]) -> None:
        self.faults = faults & self.allowed_faults
        note(f"faults: {sorted(f.value for f in faults)}")

    @rule(stream=STREAMS, replica=REPLICA, settled=st.booleans())
    def create(self, stream: str, replica: int, settled: bool) -> None:
        self._do("create", stream=stream, replica=replica)
        if settled:
            self._do("settle")

    @rule(stream=STREAMS, producer=REPLICA, reader=REPLICA)
    def conversation(self, stream: str, producer: int, reader: int) -> None:
        """A turn starts and a client attaches to it, both settled."""
        self._do("create", stream=stream, replica=producer)
        self._do("settle")
        self._do("subscribe", stream=stream, replica=reader)
        self._do("settle")

    @rule(stream=STREAMS, n=st.integers(1, 3))
    def emit(self, stream: str, n: int) -> None:
        for _ in range(n):
            self._do("emit", stream=stream)

    @rule(stream=STREAMS, how=st.sampled_from(["done", "error", "abort-r0", "abort-r1"]))
    def end(self, stream: str, how: str) -> None:
        if how.startswith("abort"):
            self._do("abort", stream=stream, replica=int(how[-1]))
        else:
            self._do("finish", stream=stream, error=how == "error")

    @rule(
        stream=STREAMS,
        replica=REPLICA,
        mode=st.sampled_from(["subscribe", "subscribe", "resume"]),
        settled=st.booleans(),
    )
    def attach(self, stream: str, replica: int, mode: str, settled: bool) -> None:
        self._do(mode, stream=stream, replica=replica)
        if settled:
            self._do("settle")

    @rule(
        stream=STREAMS,
        producer=REPLICA,
        replica=REPLICA,
        mode=st.sampled_from(["subscribe", "resume"]),
        seed=SEEDS,
        depth=st.integers(1, 2),
    )
    def attach_during(
        self, stream: str, producer: int, replica: int, mode: str, seed: int, depth: int
    ) -> None:
        """A client attaches to a turn in progress (the drawn stream's, else the other's,
        else a new one on ``producer``) while its generator emits, and everything then
        pending is released in a PCT order. The attachment boundary is where the design's
        promises are hardest; one decision at a time rarely reaches inside it."""
        live = self.sim.world.live_turns()
        if stream not in live:
            stream = live[0] if live else stream
        if stream not in live:
            self._do("create", stream=stream, replica=producer)
            self._do("settle")
        self._do(mode, stream=stream, replica=replica)
        self._do("emit", stream=stream)
        self._do("pct", seed=seed, depth=depth)

    @rule(seed=SEEDS, depth=st.integers(1, 3))
    def pct(self, seed: int, depth: int) -> None:
        """Release everything pending in a PCT order (see ForeignWorld.pct)."""
        self._do("pct", seed=seed, depth=depth)

    @rule(which=st.integers(0, 7))
    def detach(self, which: int) -> None:
        self._do("detach", which=which)

    @rule(k=PICK)
    def step(self, k: int) -> None:
        self._do("step", k=k)

    @rule(k=PICK)
    def deliver(self, k: int) -> None:
        self._do("deliver", k=k)

    @rule()
    def settle(self) -> None:
        self._do("settle")

    @precondition(lambda self: ForeignFault.CLOCK in self.faults)
    @rule(timer=st.sampled_from(["reorder_timeout", "idle_probe"]))
    def wait(self, timer: str) -> None:
        """Real time passes for the replicas' timers (see ForeignWorld)."""
        self._do("wait", timer=timer)

    @precondition(lambda self: ForeignFault.DROP in self.faults)
    @rule(k=PICK)
    def drop(self, k: int) -> None:
        self._do("drop", k=k)

    @precondition(lambda self: ForeignFault.DROP in self.faults)
    @rule(stream=STREAMS, k=st.integers(0, 3))
    def lossy_emit(self, stream: str, k: int) -> None:
        self._do("lossy_emit", stream=stream, k=k)

    @precondition(lambda self: ForeignFault.CUT in self.faults)
    @rule(k=st.integers(0, 7))
    def disconnect(self, k: int) -> None:
        self._do("disconnect", k=k)

    def _may_fail_over(self) -> bool:
        """The failover family, for agents on the harness clock: a failover may lose the
        write that ended a turn, and only a producer timeout (600 s in an example's
        settings, passed by the heal phase's clock jump) then ends its readers' wait."""
        return ForeignFault.FAILOVER in self.faults and self.sim.world.harness_clock

    @precondition(lambda self: self._may_fail_over())
    @rule()
    def failover(self) -> None:
        """The primary fails over; whatever it had not replicated is lost."""
        self._do("failover")

    @precondition(lambda self: self._may_fail_over())
    @rule(stream=STREAMS)
    def failover_after_emit(self, stream: str) -> None:
        """A chunk is acknowledged to its generator and lost by the failover."""
        self._do("failover_after_emit", stream=stream)

    def teardown(self) -> None:
        cls = type(self)
        cls.rule_steps += self.sim.rule_steps
        cls.busy_s += time.monotonic() - self._rules_started
        cls.decisions_made += len(self.sim.decisions)
        cls.faults_made.update(d.name for d in self.sim.decisions if d.name in FAULT_DECISIONS)
        # The world is idle between decisions: its figures so far are the rules'.
        timings = self.sim.world.timings
        cls.quiet_total_s += timings.quiet_s
        cls.waited_s += timings.waited_s
        cls.advanced_s += timings.advanced_s
        cls.late_activity += timings.late_activity
        cls.never_quiet += timings.never_quiet
        healing = time.monotonic()
        try:
            judged = self.sim.heal()
        except Exception as exc:
            cls.failure = _Failure(
                list(self.sim.decisions), None, None, f"{type(exc).__name__}: {exc}"
            )
            self._account(None, healing)
            self.sim.close()
            raise
        self._account(judged, healing)
        stop_failures = self.sim.close()
        if not judged.report.ok or judged.report.unknown_reason is not None or stop_failures:
            cls.failure = _Failure(
                list(self.sim.decisions), judged.report, judged, "; ".join(stop_failures) or None
            )
            raise AssertionError(judged.report.summary())

    def _account(self, judged: Judged | None, healing: float) -> None:
        """Heal time (the rules' figures were taken before the heal)."""
        cls = type(self)
        cls.heal_s += time.monotonic() - healing

    def check_invariants(self, settings: Any, output: Any, runtimes: Any) -> None:
        # A rule that decided something is one rule step (safety is judged at teardown).
        decided = len(self.sim.decisions)
        if decided != self._decided:
            self._decided = decided
            self.sim.rule_steps += 1
        super().check_invariants(settings, output, runtimes)


def foreign_machine_for(
    commands: list[list[str]],
    *,
    quiet_s: float = 0.02,
    faults: frozenset[ForeignFault] = frozenset(ForeignFault),
) -> type[ForeignMachine]:
    return type(
        "ForeignMachine_" + str(len(commands)),
        (ForeignMachine,),
        {
            "commands": commands,
            "quiet_s": quiet_s,
            "allowed_faults": faults,
            "failure": None,
            "examples": 0,
            "rule_steps": 0,
            "decisions_made": 0,
            "faults_made": Counter(),
            "busy_s": 0.0,
            "heal_s": 0.0,
            "start_s": 0.0,
            "late_activity": 0,
            "never_quiet": 0,
            "quiet_total_s": 0.0,
            "waited_s": 0.0,
            "advanced_s": 0.0,
        },
    )


@dataclass
class ForeignCampaign:
    examples: int
    seconds: float
    rule_steps: int
    decisions: int
    #: Seconds in the rules' decisions, in heal phases, in starting agents.
    busy_s: float
    heal_s: float
    start_s: float
    #: Within the rules: seconds of quiet waits, of real time let pass on purpose by
    #: ``wait`` decisions, and of harness-clock jumps that replaced such waits (heal
    #: phases not included in any).
    quiet_s: float
    waited_s: float
    advanced_s: float
    late_activity: int
    #: Quiet waits that ended at their limit (an agent kept running or talking).
    never_quiet: int = 0
    #: Fault decisions made by the rules, by name.
    faults_made: dict[str, int] = field(default_factory=dict)
    report: CheckReport | None = None
    crash: str | None = None
    #: Decisions of the failing example, as Hypothesis found it and after minimizing.
    found_decisions: int | None = None
    minimized: list[Decision] = field(default_factory=list)
    #: Candidate lists the minimizer tried, and the replays they cost.
    minimize_candidates: int = 0
    minimize_replays: int = 0
    #: The minimizer's deadline stopped it before no deletion was left to try.
    minimize_out_of_time: bool = False
    replay_file: Path | None = None

    @property
    def failed(self) -> bool:
        return self.report is not None or self.crash is not None


@dataclass(frozen=True, slots=True)
class ReproductionRule:
    """When a candidate decision list counts as failing while minimizing: at least
    ``needed`` of ``runs`` replays show the anomaly's class."""

    needed: int = 2
    runs: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.needed <= self.runs:
            raise ValueError(
                f"a reproduction rule needs 1 <= K <= N, not {self.needed} of {self.runs}"
            )

    def holds(self, replay_shows: Callable[[], bool]) -> bool:
        """Replay until the verdict is certain: ``needed`` replays showed the class, or
        too few are left for them to (a list that never fails costs N - K + 1 runs)."""
        shown = missed = 0
        while shown < self.needed and missed <= self.runs - self.needed:
            if replay_shows():
                shown += 1
            else:
                missed += 1
        return shown >= self.needed

    def __str__(self) -> str:
        return f"{self.needed} of {self.runs}"


#: The minimizer's default: a majority of three replays.
DEFAULT_REPRODUCTION: Final = ReproductionRule(needed=2, runs=3)


def run_foreign_campaign(
    commands: list[list[str]],
    *,
    examples: int,
    seed: int | None = 0,
    steps: int = 12,
    quiet_s: float = 0.02,
    replay_file: Path | None = None,
    minimize_s: float = 120.0,
    on_example: Callable[[int], None] | None = None,
    faults: frozenset[ForeignFault] = frozenset(ForeignFault),
    reproduction: ReproductionRule = DEFAULT_REPRODUCTION,
) -> ForeignCampaign:
    """Run up to ``examples`` examples; stop at the first failure, minimize it (a
    candidate kept when it reproduces by ``reproduction``; ``minimize_s`` seconds for
    each replay a candidate needs), and write its replay file."""
    machine = foreign_machine_for(commands, quiet_s=quiet_s, faults=faults)
    machine.on_example = on_example
    chosen = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
        report_multiple_bugs=False,
    )
    started = time.monotonic()
    test = get_state_machine_test(machine, settings=chosen)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    try:
        test()
    except Exception:  # the failure is kept on the machine class
        if machine.failure is None:
            raise
    campaign = ForeignCampaign(
        examples=machine.examples,
        seconds=time.monotonic() - started,
        rule_steps=machine.rule_steps,
        decisions=machine.decisions_made,
        faults_made=dict(machine.faults_made),
        busy_s=machine.busy_s,
        heal_s=machine.heal_s,
        start_s=machine.start_s,
        quiet_s=machine.quiet_total_s,
        late_activity=machine.late_activity,
        never_quiet=machine.never_quiet,
        waited_s=machine.waited_s,
        advanced_s=machine.advanced_s,
    )
    failure = machine.failure
    if failure is None:
        return campaign
    campaign.report = failure.report
    campaign.crash = failure.crash
    campaign.found_decisions = len(failure.decisions)
    campaign.minimized = failure.decisions
    kind = _first_kind(failure.report)
    if kind is not None:

        def still_fails(candidate: list[Decision]) -> bool:
            def replay_shows() -> bool:
                campaign.minimize_replays += 1
                judged = _run_once(commands, candidate, quiet_s)
                return judged is not None and _first_kind(judged.report) == kind

            return reproduction.holds(replay_shows)

        shorter = minimize_decisions(
            # A candidate costs ``needed`` replays or more: the budget grows with them.
            failure.decisions,
            still_fails,
            deadline=time.monotonic() + minimize_s * reproduction.needed,
        )
        campaign.minimized = shorter.decisions
        campaign.minimize_candidates = shorter.replays
        campaign.minimize_out_of_time = shorter.out_of_time
        if len(shorter.decisions) < len(failure.decisions):
            # The file shows the minimized example: its trace and history, from a replay
            # that showed the anomaly (the example as found, if none of N did).
            for _ in range(reproduction.runs):
                judged = _run_once(commands, shorter.decisions, quiet_s)
                if judged is not None and _first_kind(judged.report) == kind:
                    failure = _Failure(failure.decisions, judged.report, judged, failure.crash)
                    campaign.report = judged.report
                    break
    if replay_file is not None:
        write_foreign_replay(replay_file, commands, campaign.minimized, failure, quiet_s)
        campaign.replay_file = replay_file
    return campaign


def _first_kind(report: CheckReport | None) -> AnomalyKind | None:
    if report is None or not report.anomalies:
        return None
    return report.anomalies[0].kind


def _run_once(
    commands: list[list[str]], decisions: list[Decision], quiet_s: float
) -> Judged | None:
    sim = ForeignSimulation(commands, quiet_s=quiet_s)
    try:
        sim.start()
        for decision in decisions:
            sim.apply(decision)
        return sim.heal()
    except Exception:
        return None
    finally:
        sim.close()


def write_foreign_replay(
    path: Path,
    commands: list[list[str]],
    decisions: list[Decision],
    failure: _Failure,
    quiet_s: float,
) -> None:
    """The replay file, and ``timeline.html`` beside it (the fields the timeline reads
    carry the in-process replay file's names: ``history``, ``report``, ``redis_trace``)."""
    judged = failure.judged
    report = failure.report
    payload = {
        "schema": REPLAY_SCHEMA,
        "name": "foreign: " + " | ".join(" ".join(command) for command in commands),
        "impl": commands,
        "replicas": len(commands),
        "quiet_s": quiet_s,
        "decisions": [d.to_json() for d in decisions],
        "found_decisions": len(failure.decisions),
        "anomaly": None if _first_kind(report) is None else str(_first_kind(report)),
        "summary": None if report is None else report.summary(),
        "report": None if report is None else report.to_json(),
        "crash": failure.crash,
        "redis_trace": [] if judged is None else judged.trace[-2000:],
        "history": [] if judged is None else history_to_json(judged.history),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    if judged is not None:
        write_timeline(path, path.parent / TIMELINE_FILENAME)


@dataclass(frozen=True)
class ReplayVerdict:
    runs: int
    reproduced: int
    deterministic: bool
    anomaly: str | None

    def describe(self) -> str:
        if self.deterministic and self.reproduced == self.runs:
            return f"deterministic: yes ({self.runs} replays, identical histories)"
        return f"reproduced {self.reproduced} of {self.runs} replays"


def _shape(judged: Judged) -> list[dict[str, Any]]:
    """The history without times: what must repeat for a replay to be identical."""
    return [
        {k: v for k, v in record.items() if k not in ("time",)}
        for record in history_to_json(judged.history)
    ]


def replay_foreign(path: Path, runs: int = 3) -> ReplayVerdict:
    """Run a foreign replay file's decisions ``runs`` times."""
    raw = json.loads(path.read_text())
    if raw.get("schema") != REPLAY_SCHEMA:
        raise ValueError(f"{path} is not a foreign replay file ({REPLAY_SCHEMA})")
    commands = [list(c) for c in raw["impl"]]
    decisions = [Decision(name, dict(args)) for name, args in raw["decisions"]]
    anomaly = raw.get("anomaly")
    reproduced = 0
    shapes: list[list[dict[str, Any]]] = []
    for _ in range(runs):
        judged = _run_once(commands, decisions, float(raw.get("quiet_s", 0.02)))
        if judged is None:
            continue
        shapes.append(_shape(judged))
        kind = _first_kind(judged.report)
        if (str(kind) if kind is not None else None) == anomaly:
            reproduced += 1
    deterministic = len(shapes) == runs and all(s == shapes[0] for s in shapes)
    return ReplayVerdict(runs, reproduced, deterministic, anomaly)
