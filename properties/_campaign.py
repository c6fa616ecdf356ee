"""Running the state machine as a campaign: budgets, canaries, timing, replay files.

Used by the CLI (``streamcheck run``, ``streamcheck canaries``), the pytest plugin, the
parallel runner and the test suite, so that what CI checks and what a person runs are
the same thing. What to run is one :class:`CampaignSpec`; :func:`run` runs it (in
worker processes, within a time budget, or as one campaign), and
:func:`streamcheck.properties._run_report.run_and_report` runs it and writes its report.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import HypothesisException
from hypothesis.stateful import get_state_machine_test

from streamcheck.model import AnomalyKind, CheckReport
from streamcheck.properties._minimize import minimize_replay_file
from streamcheck.properties._run_limits import DEFAULT_REPLICAS, SimBackend
from streamcheck.properties._simulation import describe_crash
from streamcheck.properties.canaries import Canary
from streamcheck.properties.machine import StreamMachine, machine_for

#: Rare paths a campaign on the correct implementation must reach, or a green run means
#: little (``streamcheck run`` and the CI profile both check them). ("gap filled late"
#: is not here: one primary's messages reach a subscriber in seq order, and with the
#: relayed (Cluster) topology a new primary's first publish jumps the counter past the
#: old one's range, so on the correct implementation a gap is only ever filled from
#: the log.)
REQUIRED_LABELS = frozenset(
    {
        "abort during a reconnect",
        "coalesced batch published",
        "duplicate dropped",
        "failover lost writes",
        "gap repaired from the log",
        "gap signalled",
        "lost writes signalled as a gap",
        "new turn on a reused stream id",
        "resume after a crash",
        "subscribe acknowledged after emits",
        "untrusted channel message dropped",
    }
)
#: The rare paths a campaign over the memory backend must reach: the ones that need
#: no lost message, failover or crash, which the memory backend never has.
MEMORY_REQUIRED_LABELS = frozenset(
    {
        "duplicate dropped",
        "new turn on a reused stream id",
        "subscribe acknowledged after emits",
    }
)


def required_labels(backend: SimBackend) -> frozenset[str]:
    """The rare paths a clean run of the correct implementation on ``backend`` must
    reach."""
    return MEMORY_REQUIRED_LABELS if backend is SimBackend.MEMORY else REQUIRED_LABELS


@dataclass(frozen=True, slots=True)
class CampaignResult:
    canaries: frozenset[Canary]
    examples: int
    seconds: float
    anomaly_kinds: tuple[AnomalyKind, ...]
    #: Examples and wall seconds until the first failing example (None: none failed).
    first_failure_example: int | None
    first_failure_seconds: float | None
    #: The shrunk failing example's length: decisions (what its replay file lists, after
    #: minimization) and state-machine rules (what Hypothesis printed; a macro rule
    #: makes several decisions).
    shrunk_steps: int | None
    replay_file: Path | None
    crashed: str | None = None
    #: Rare paths reached, with how many examples reached each.
    labels: dict[str, int] = field(default_factory=dict)
    #: Channel messages the replicas dropped, summed over the examples that ran to
    #: their heal phase: ``foreign_hints``, ``malformed_dropped`` and
    #: ``unconfirmed_aborts`` (see
    #: :func:`streamcheck.properties._hostile.channel_figures`).
    channel: dict[str, int] = field(default_factory=dict)
    #: The example budget (``max_examples``) the campaign ran with.
    budget: int | None = None
    #: The seed of the search: the one passed in, or the one Hypothesis drew (None when
    #: the settings derandomize). Passing it back as ``seed`` repeats the search.
    seed: int | None = None
    #: Decisions applied over the whole campaign, shrinking included (one rule step is
    #: one decision, as in ``streamcheck bench``'s sim-speed figure).
    rule_steps: int | None = None
    #: State-machine rules run over the whole campaign (each one decision or more).
    rules: int | None = None
    shrunk_rules: int | None = None
    #: Decisions in Hypothesis's shrunk example, before :mod:`streamcheck.properties._minimize`
    #: deleted what the failure did not need (None: nothing failed).
    hypothesis_shrunk_steps: int | None = None
    #: Examples that failed (the first one, then every failing shrink attempt).
    failing_examples: int = 0
    #: The checker's report on the last (shrunk) failing example, with every anomaly's
    #: explanation sentence; None when nothing failed.
    report: CheckReport | None = None
    #: Replicas in each example's world.
    replicas: int = DEFAULT_REPLICAS
    #: What the replicas shared.
    backend: SimBackend = SimBackend.REDIS
    #: The wall-clock budget of a :func:`run_within` run (None: examples only).
    budget_seconds: float | None = None
    #: Processes the campaigns ran in (see :mod:`streamcheck.properties._parallel`).
    workers: int = 1
    #: The rare paths this run must reach (see :attr:`unreached_labels`).
    required_labels: frozenset[str] = REQUIRED_LABELS

    @property
    def found(self) -> bool:
        return self.first_failure_example is not None

    @property
    def unreached_labels(self) -> tuple[str, ...]:
        """The required rare paths this campaign never reached (checked only when it ran
        the correct implementation: a canary changes which paths exist)."""
        if self.canaries:
            return ()
        return tuple(sorted(self.required_labels - set(self.labels)))

    def shrink_summary(self) -> str:
        """``shrunk to 4 decisions (Hypothesis: 12 rules, 18 decisions)``."""
        rules = f"{self.shrunk_rules} rule{'' if self.shrunk_rules == 1 else 's'}"
        hypothesis = f"{rules}, {self.hypothesis_shrunk_steps} decisions"
        return f"shrunk to {self.shrunk_steps} decisions (Hypothesis: {hypothesis})"


#: Examples per campaign in a run bounded by time (:func:`run_within`) or shared out
#: among workers: few enough that the budget is overshot by seconds at most, enough
#: that Hypothesis gets well past the simplest examples each campaign starts with.
CHUNK_EXAMPLES = 100
#: The example budget of a single campaign when none is given.
DEFAULT_EXAMPLES = 200


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What to run: the one description of a simulation run that the CLI, the pytest
    plugin and the parallel runner each build and hand to :func:`run`.

    The run is one campaign of ``examples`` examples, unless it has a time budget
    (``seconds``: campaigns of ``chunk`` examples until the time, or ``examples``, runs
    out) or several ``workers`` (campaigns of ``chunk`` shared out among processes).
    """

    canaries: frozenset[Canary] = frozenset()
    #: The example budget (None: bounded by ``seconds`` only, or :data:`DEFAULT_EXAMPLES`
    #: for a single campaign).
    examples: int | None = None
    #: The wall-clock budget in seconds (None: examples only).
    seconds: float | None = None
    #: The seed of the search (None: Hypothesis, or the runner, draws one).
    seed: int | None = None
    #: Where a failure's replay file goes (None: nowhere).
    replay_file: Path | None = None
    replicas: int = DEFAULT_REPLICAS
    #: Processes the campaigns run in (see :mod:`streamcheck.properties._parallel`).
    workers: int = 1
    #: Shrink a failing example (ignored when ``hypothesis_settings`` is given).
    shrink: bool = True
    #: Settings for a single campaign, replacing :func:`campaign_settings` (``examples``
    #: and ``shrink`` are then ignored): the pytest plugin passes its profiles here.
    hypothesis_settings: settings | None = None
    #: Examples per campaign of a run bounded by time or shared among workers.
    chunk: int = CHUNK_EXAMPLES
    #: The rare paths a clean run of the correct implementation must reach (see
    #: :func:`required_labels` for a backend's).
    required_labels: frozenset[str] = REQUIRED_LABELS
    #: What the replicas share: the simulated Redis or the memory backend.
    backend: SimBackend = SimBackend.REDIS

    @property
    def in_campaigns(self) -> bool:
        """The run is made of several campaigns (a time budget, or workers)."""
        return self.workers > 1 or self.seconds is not None

    def settings(self) -> settings:
        """The Hypothesis settings each campaign of the run uses."""
        if self.hypothesis_settings is not None:
            return self.hypothesis_settings
        if self.in_campaigns:
            return campaign_settings(self.chunk, shrink=self.shrink)
        examples = self.examples if self.examples is not None else DEFAULT_EXAMPLES
        return campaign_settings(examples, shrink=self.shrink)


def run(spec: CampaignSpec, *, on_progress: ProgressCallback | None = None) -> CampaignResult:
    """Run ``spec``: in worker processes, within its time budget, or as one campaign."""
    if spec.in_campaigns and spec.hypothesis_settings is not None:
        raise ValueError("hypothesis_settings apply to a single campaign: no workers, no budget")
    if spec.workers > 1:
        from streamcheck.properties._parallel import run_spec_in_workers

        result = run_spec_in_workers(spec, on_progress=on_progress)
    elif spec.seconds is not None:
        result = _run_within(spec, on_progress=on_progress)
    else:
        result = run_one_campaign(spec, on_progress=on_progress)
    if result.required_labels != spec.required_labels:
        result = dataclasses.replace(result, required_labels=spec.required_labels)
    return result


@contextmanager
def _quiet() -> Iterator[None]:
    # impl logs every simulated reconnect; the run's report says what matters.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """Leave everything alive before the campaign out of the cyclic collector's scans.

    The simulation allocates fast, so collections are frequent, and each older one
    walked every module, class and function the process had imported: about a tenth of
    a campaign's time, half of which this saves. The objects are only moved to the
    permanent generation until the campaign ends (``unfreeze``), never freed by it.
    The collector finalizes nothing a history depends on (replay runs, which
    allocate differently, give identical histories), so this is speed only.
    """
    if gc.get_freeze_count():  # the caller froze objects: leave them as they are
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def campaign_settings(examples: int, *, shrink: bool = True, steps: int = 30) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        database=None,
        print_blob=True,
        report_multiple_bugs=False,
    )


@dataclass(frozen=True, slots=True)
class Progress:
    """A campaign's state, passed to ``run_campaign(on_progress=...)``.

    Sent after every example, failing ones included (from the machine's teardown), and
    once more with ``finished=True`` when the campaign returns.
    """

    #: Examples finished so far (shrink attempts included).
    examples: int
    #: The example budget (``max_examples``).
    budget: int
    #: Examples that failed so far (the first failure, then failing shrink attempts).
    failing_examples: int
    #: The anomaly classes of the latest failing example.
    anomaly_kinds: tuple[AnomalyKind, ...]
    #: Wall seconds since the campaign started.
    elapsed: float
    #: The campaign is over (the last call).
    finished: bool = False
    #: The settings let Hypothesis shrink a failing example.
    shrink: bool = True
    #: The run's wall-clock budget (:func:`run_within`), if it has one.
    budget_seconds: float | None = None

    @property
    def found(self) -> bool:
        """An example failed (Hypothesis then shrinks it, when ``shrink`` is on)."""
        return self.failing_examples > 0


ProgressCallback = Callable[[Progress], None]


def run_campaign(
    *,
    canaries: frozenset[Canary] = frozenset(),
    examples: int = DEFAULT_EXAMPLES,
    seed: int | None = None,
    replay_file: Path | None = None,
    shrink: bool = True,
    hypothesis_settings: settings | None = None,
    on_progress: ProgressCallback | None = None,
    replicas: int = DEFAULT_REPLICAS,
    backend: SimBackend = SimBackend.REDIS,
) -> CampaignResult:
    """Run the machine until ``examples`` pass or one fails (then shrink it): one
    campaign of a :class:`CampaignSpec` with these fields (see there)."""
    spec = CampaignSpec(
        canaries=canaries,
        examples=examples,
        seed=seed,
        replay_file=replay_file,
        shrink=shrink,
        hypothesis_settings=hypothesis_settings,
        replicas=replicas,
        required_labels=required_labels(backend),
        backend=backend,
    )
    return run_one_campaign(spec, on_progress=on_progress)


def run_one_campaign(
    spec: CampaignSpec, *, on_progress: ProgressCallback | None = None
) -> CampaignResult:
    """One campaign of ``spec`` with :meth:`CampaignSpec.settings` (its time budget and
    workers are the callers' business). A ``seed`` overrides the settings' own
    randomness (``derandomize`` included). ``on_progress`` is called with a
    :class:`Progress` as the campaign goes."""
    canaries, replicas = spec.canaries, spec.replicas
    seed, replay_file = spec.seed, spec.replay_file
    chosen = spec.settings()
    machine = machine_for(
        canaries, failure_path=replay_file, replicas=replicas, backend=spec.backend
    )
    started = time.perf_counter()
    counter = _Counter(
        machine,
        budget=chosen.max_examples,
        shrink=Phase.shrink in chosen.phases,
        started=started,
        on_progress=on_progress,
    )
    crashed: str | None = None
    test: Callable[[], None] | None = None
    with _quiet(), _gc_frozen():
        try:
            test = get_state_machine_test(machine, settings=chosen)
            if seed is not None:
                # The same seed explores the same examples; different seeds, different ones.
                test = hypothesis_seed(seed)(test)
            test()
        except (AssertionError, HypothesisException) as exc:
            if machine.last_failure is None:
                crashed = f"{type(exc).__name__}: {exc}"[:2000]
        except Exception as exc:  # a crash of impl/ or the harness is a finding too
            crashed = describe_crash(exc)
    report = machine.last_failure
    shrunk = shrunk_rules = hypothesis_shrunk = None
    # An anomaly or a crash of the simulated world wrote the replay file (a crash of
    # the harness itself writes none).
    failed = report is not None or crashed is not None
    wrote = failed and replay_file is not None and replay_file.exists()
    if wrote and replay_file is not None:
        replayed = json.loads(replay_file.read_text())
        shrunk = hypothesis_shrunk = len(replayed["decisions"])
        shrunk_rules = replayed.get("rule_steps")
        if Phase.shrink in chosen.phases:
            minimized = minimize_replay_file(replay_file)
            if minimized is not None:
                shrunk = minimized.after
                if report is not None and crashed is None:
                    report = minimized.report
    seconds = time.perf_counter() - started  # minimizing included
    counter.notify(finished=True)
    if seed is None and test is not None:
        # The seed Hypothesis drew for this run (None when derandomized): passing it as
        # ``seed`` explores the same examples again.
        drawn = getattr(test, "_hypothesis_internal_use_generated_seed", None)
        seed = drawn if isinstance(drawn, int) else None
    return CampaignResult(
        canaries=canaries,
        examples=counter.examples,
        seconds=seconds,
        anomaly_kinds=tuple(sorted(report.by_kind(), key=lambda k: k.value)) if report else (),
        first_failure_example=counter.first_failure_example,
        first_failure_seconds=(
            counter.first_failure_at - started if counter.first_failure_at is not None else None
        ),
        shrunk_steps=shrunk,
        replay_file=replay_file if wrote else None,
        crashed=crashed,
        labels=dict(machine.labels_seen),
        channel=dict(machine.channel_seen),
        budget=chosen.max_examples,
        seed=seed,
        rule_steps=counter.rule_steps,
        rules=counter.rules,
        shrunk_rules=shrunk_rules,
        hypothesis_shrunk_steps=hypothesis_shrunk,
        failing_examples=counter.failing_examples,
        report=report,
        replicas=replicas,
        backend=spec.backend,
        required_labels=spec.required_labels,
    )


def run_within(
    seconds: float,
    *,
    examples: int | None = None,
    canaries: frozenset[Canary] = frozenset(),
    seed: int | None = None,
    replay_file: Path | None = None,
    on_progress: ProgressCallback | None = None,
    replicas: int = DEFAULT_REPLICAS,
) -> CampaignResult:
    """Campaigns of :data:`CHUNK_EXAMPLES` examples, one after another, until one finds
    an anomaly or crashes, ``examples`` ran (if given), or ``seconds`` passed; merged
    into one result. Hypothesis cannot be stopped mid-campaign, so the budget is checked
    between campaigns. The campaigns use seeds ``seed``, ``seed + 1``, ... (a ``seed``
    is drawn if none is given), so the same seed explores the same examples in the
    same order."""
    spec = CampaignSpec(
        canaries=canaries,
        examples=examples,
        seconds=seconds,
        seed=seed,
        replay_file=replay_file,
        replicas=replicas,
    )
    return _run_within(spec, on_progress=on_progress)


def _run_within(spec: CampaignSpec, *, on_progress: ProgressCallback | None) -> CampaignResult:
    """:func:`run_within` for a spec with a time budget (campaigns of ``spec.chunk``)."""
    seconds, examples, seed = spec.seconds, spec.examples, spec.seed
    if seconds is None or seconds <= 0:
        raise ValueError(f"the time budget must be positive, not {seconds}")
    if seed is None:
        # One seed for the whole run, so that results' seed repeats all of it.
        seed = secrets.randbits(32)
    started = time.perf_counter()
    results: list[tuple[float, int, CampaignResult]] = []
    done = 0

    def shifted(progress: Progress) -> None:
        if on_progress is not None and not progress.finished:
            on_progress(
                dataclasses.replace(
                    progress,
                    examples=done + progress.examples,
                    budget=examples or 0,
                    elapsed=time.perf_counter() - started,
                    budget_seconds=seconds,
                )
            )

    while True:
        size = spec.chunk if examples is None else min(spec.chunk, examples - done)
        offset = time.perf_counter() - started
        campaign = dataclasses.replace(
            spec, examples=size, seconds=None, seed=seed + len(results), workers=1
        )
        result = run_one_campaign(campaign, on_progress=shifted)
        results.append((offset, done, result))
        done += result.examples
        out_of_examples = examples is not None and done >= examples
        if result.found or result.crashed or out_of_examples:
            break
        if time.perf_counter() - started >= seconds:
            break
    merged = _merged(results, seconds=time.perf_counter() - started, budget=examples)
    merged = dataclasses.replace(merged, budget_seconds=seconds)
    if on_progress is not None:
        on_progress(finished_progress(merged))
    return merged


def finished_progress(result: CampaignResult) -> Progress:
    """The last progress report of a run made of several campaigns, from its merged
    result."""
    return Progress(
        examples=result.examples,
        budget=result.budget or 0,
        failing_examples=result.failing_examples,
        anomaly_kinds=result.anomaly_kinds,
        elapsed=result.seconds,
        finished=True,
        budget_seconds=result.budget_seconds,
    )


def _merged(
    results: list[tuple[float, int, CampaignResult]], *, seconds: float, budget: int | None
) -> CampaignResult:
    """One result for consecutive campaigns: counts summed, the failure (the last
    campaign's, the only one that can have failed) placed after the ones before."""
    offset, before, last = results[-1]
    first = results[0][2]
    labels: Counter[str] = Counter()
    channel: Counter[str] = Counter()
    for _, _, result in results:
        labels.update(result.labels)
        channel.update(result.channel)
    return dataclasses.replace(
        last,
        examples=sum(r.examples for _, _, r in results),
        seconds=seconds,
        first_failure_example=(
            before + last.first_failure_example if last.first_failure_example is not None else None
        ),
        first_failure_seconds=(
            offset + last.first_failure_seconds if last.first_failure_seconds is not None else None
        ),
        labels=dict(labels),
        channel=dict(channel),
        budget=budget,
        seed=first.seed,
        rule_steps=sum(r.rule_steps or 0 for _, _, r in results),
        rules=sum(r.rules or 0 for _, _, r in results),
    )


class _Counter:
    """Counts examples, decisions and failures, notes when the first example failed,
    and reports progress (all via the machine's hooks, on the campaign's own subclass)."""

    def __init__(
        self,
        machine: type[StreamMachine],
        *,
        budget: int = 0,
        shrink: bool = True,
        started: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.examples = 0
        self.finished_examples = 0
        self.rule_steps = 0
        self.rules = 0
        self.failing_examples = 0
        self.latest_kinds: tuple[AnomalyKind, ...] = ()
        self.first_failure_example: int | None = None
        self.first_failure_at: float | None = None
        self.budget = budget
        self.shrink = shrink
        self.started = time.perf_counter() if started is None else started
        self.on_progress = on_progress
        counter = self
        original_init = machine.__init__
        original_judge = machine._judge
        original_do = machine._do
        original_teardown = machine.teardown

        def counting_init(self: StreamMachine) -> None:
            counter.examples += 1
            original_init(self)

        def noting_judge(self: StreamMachine, report: CheckReport) -> None:
            if not report.ok:
                counter.failing_examples += 1
                counter.latest_kinds = tuple(sorted(report.by_kind(), key=lambda k: k.value))
                if counter.first_failure_example is None:
                    counter.first_failure_example = counter.examples
                    counter.first_failure_at = time.perf_counter()
            original_judge(self, report)

        def counting_do(self: StreamMachine, name: str, **args: object) -> None:
            counter.rule_steps += 1
            original_do(self, name, **args)

        def reporting_teardown(self: StreamMachine) -> None:
            try:
                original_teardown(self)
            finally:
                counter.rules += self.sim.rule_steps
                counter.finished_examples += 1
                counter.notify()

        machine.__init__ = counting_init  # type: ignore[method-assign]
        machine._judge = noting_judge  # type: ignore[method-assign]
        machine._do = counting_do  # type: ignore[method-assign]
        machine.teardown = reporting_teardown  # type: ignore[method-assign]

    def notify(self, *, finished: bool = False) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            Progress(
                examples=self.finished_examples,
                budget=self.budget,
                failing_examples=self.failing_examples,
                anomaly_kinds=self.latest_kinds,
                elapsed=time.perf_counter() - self.started,
                finished=finished,
                shrink=self.shrink,
            )
        )
