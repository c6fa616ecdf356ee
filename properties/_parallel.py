"""Campaigns in several worker processes at once: more examples per wall second.

One Python process runs one simulation at a time on one core; a machine with more
cores can run more. The work is the same as :func:`streamcheck.properties._campaign.run_within`'s:
campaigns of ``chunk`` examples with seeds ``seed``, ``seed + 1``, ..., here handed out
from a shared counter to whichever worker is free, so the same seed explores the same
campaigns (which worker runs which one, and how far a time budget gets, depend on
timing). The first failure or crash stops every worker from starting another campaign;
each worker finishes the one it is in (Hypothesis cannot be stopped mid-campaign), and
the failing one shrinks and minimizes as usual.

Workers are spawned, not forked: each starts a fresh interpreter, so nothing of the
parent's state (a trio run, threads, a patched clock) leaks into them.

Example::

    result = run_in_workers(2, seconds=600.0, seed=7, replay_file=Path("run.json"))
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import secrets
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcheck.model import AnomalyKind
from streamcheck.properties._campaign import (
    CHUNK_EXAMPLES,
    CampaignResult,
    CampaignSpec,
    Progress,
    ProgressCallback,
    finished_progress,
    run_one_campaign,
)
from streamcheck.properties._run_limits import DEFAULT_REPLICAS, MAX_WORKERS
from streamcheck.properties.canaries import Canary

#: Seconds the parent waits for a message before checking that its workers still live.
_POLL_S = 0.25
#: Polls a dead worker gets for its last message to arrive before it counts as crashed.
_GRACE_POLLS = 8


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every worker is told (pickled to each)."""

    #: The run, its seed drawn if it had none.
    spec: CampaignSpec
    seed: int
    #: ``time.monotonic()`` when the run started (one clock for every process on Linux).
    started: float

    @property
    def workers(self) -> int:
        return self.spec.workers

    @property
    def seconds(self) -> float | None:
        return self.spec.seconds

    @property
    def examples(self) -> int | None:
        return self.spec.examples

    @property
    def replay_file(self) -> Path | None:
        return self.spec.replay_file


@dataclass(frozen=True, slots=True)
class _Tick:
    """A worker's progress: examples finished over all its campaigns so far."""

    worker: int
    examples: int
    failing_examples: int
    anomaly_kinds: tuple[AnomalyKind, ...]


@dataclass(frozen=True, slots=True)
class _Finished:
    worker: int
    #: ``(campaign index, result)`` for every campaign the worker ran.
    campaigns: list[tuple[int, CampaignResult]]


@dataclass(frozen=True, slots=True)
class _WorkerCrashed:
    worker: int
    error: str


def worker_replay_file(replay_file: Path, worker: int) -> Path:
    """Where worker ``worker`` writes its failures' replay file."""
    return replay_file.with_name(f"{replay_file.stem}.worker{worker}{replay_file.suffix}")


def run_in_workers(
    workers: int,
    *,
    seconds: float | None = None,
    examples: int | None = None,
    canaries: frozenset[Canary] = frozenset(),
    seed: int | None = None,
    replay_file: Path | None = None,
    on_progress: ProgressCallback | None = None,
    replicas: int = DEFAULT_REPLICAS,
    chunk: int = CHUNK_EXAMPLES,
) -> CampaignResult:
    """Campaigns in ``workers`` processes until one finds an anomaly or crashes,
    ``examples`` ran (if given) or ``seconds`` passed (if given); merged into one result
    whose first failure is counted in examples and seconds of the whole run."""
    spec = CampaignSpec(
        canaries=canaries,
        examples=examples,
        seconds=seconds,
        seed=seed,
        replay_file=replay_file,
        replicas=replicas,
        workers=workers,
        chunk=chunk,
    )
    return run_spec_in_workers(spec, on_progress=on_progress)


def run_spec_in_workers(
    spec: CampaignSpec, *, on_progress: ProgressCallback | None = None
) -> CampaignResult:
    """:func:`run_in_workers` for a :class:`CampaignSpec` (``spec.workers`` processes,
    campaigns of ``spec.chunk`` examples)."""
    workers, seconds, examples = spec.workers, spec.seconds, spec.examples
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1 to {MAX_WORKERS}, not {workers}")
    if seconds is None and examples is None:
        raise ValueError("give a time budget, an example budget or both")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"the time budget must be positive, not {seconds}")
    if examples is not None and examples < 1:
        raise ValueError(f"the example budget must be at least 1, not {examples}")
    if spec.chunk < 1:
        raise ValueError(f"campaigns need at least one example, not {spec.chunk}")
    seed = spec.seed if spec.seed is not None else secrets.randbits(32)
    plan = _Plan(spec=spec, seed=seed, started=time.monotonic())
    context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[_Tick | _Finished | _WorkerCrashed] = context.Queue()
    claims = context.Lock()
    next_campaign = context.Value("q", 0, lock=False)
    claimed_examples = context.Value("q", 0, lock=False)
    stop = context.Event()
    processes = [
        context.Process(
            target=_work,
            args=(index, plan, messages, claims, next_campaign, claimed_examples, stop),
            name=f"streamcheck-worker-{index}",
            daemon=True,
        )
        for index in range(workers)
    ]
    collector = _Collector(plan, on_progress)
    try:
        for process in processes:
            process.start()
        collector.collect(messages, processes)
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        messages.close()
    return collector.merged(time.monotonic() - plan.started)


class _Collector:
    """The parent's side: gathers progress and results, reports merged progress."""

    def __init__(self, plan: _Plan, on_progress: ProgressCallback | None) -> None:
        self._plan = plan
        self._on_progress = on_progress
        self._ticks: dict[int, _Tick] = {}
        #: ``(campaign index, worker, result)`` of every campaign run.
        self._campaigns: list[tuple[int, int, CampaignResult]] = []
        self._crashes: list[str] = []
        self.first_failure_example: int | None = None
        self.first_failure_seconds: float | None = None
        self._first_failing_worker: int | None = None

    def collect(
        self,
        messages: multiprocessing.Queue[_Tick | _Finished | _WorkerCrashed],
        processes: list[Any],
    ) -> None:
        pending = set(range(len(processes)))
        dead_polls: Counter[int] = Counter()
        while pending:
            try:
                message = messages.get(timeout=_POLL_S)
            except queue.Empty:
                for index in sorted(pending):
                    if processes[index].is_alive():
                        continue
                    dead_polls[index] += 1
                    if dead_polls[index] >= _GRACE_POLLS:
                        code = processes[index].exitcode
                        self._crashes.append(f"worker {index} died (exit code {code})")
                        pending.discard(index)
                continue
            if isinstance(message, _Tick):
                self._tick(message)
            elif isinstance(message, _Finished):
                self._campaigns.extend((i, message.worker, r) for i, r in message.campaigns)
                pending.discard(message.worker)
            else:
                self._crashes.append(f"worker {message.worker}: {message.error}")
                pending.discard(message.worker)

    def _tick(self, tick: _Tick) -> None:
        self._ticks[tick.worker] = tick
        elapsed = time.monotonic() - self._plan.started
        examples = sum(t.examples for t in self._ticks.values())
        failing = sum(t.failing_examples for t in self._ticks.values())
        if failing and self.first_failure_example is None:
            self._first_failing_worker = tick.worker
            self.first_failure_example = examples
            self.first_failure_seconds = elapsed
        if self._on_progress is not None:
            self._on_progress(
                Progress(
                    examples=examples,
                    budget=self._plan.examples or 0,
                    failing_examples=failing,
                    anomaly_kinds=tick.anomaly_kinds,
                    elapsed=elapsed,
                    budget_seconds=self._plan.seconds,
                )
            )

    def merged(self, seconds: float) -> CampaignResult:
        plan = self._plan
        campaigns = sorted(self._campaigns, key=lambda entry: entry[0])
        results = [result for _, _, result in campaigns]
        # The failure reported is the one met first in time (its example and second
        # are the run's first failure); else the first crash; else nothing failed.
        first = [r for _, w, r in campaigns if r.found and w == self._first_failing_worker]
        found = [r for r in results if r.found]
        crashed = [r for r in results if r.crashed]
        candidates = first or found or crashed or results
        chosen = candidates[0] if candidates else None
        replay = self._settle_replay_files(chosen)
        crash = chosen.crashed if chosen is not None else None
        if self._crashes:
            crash = "\n".join([*self._crashes, *([crash] if crash else [])])
        labels: Counter[str] = Counter()
        channel: Counter[str] = Counter()
        for result in results:
            labels.update(result.labels)
            channel.update(result.channel)
        base = chosen if chosen is not None else _empty(plan)
        failed = chosen is not None and chosen.found
        merged = dataclasses.replace(
            base,
            examples=sum(r.examples for r in results),
            seconds=seconds,
            first_failure_example=self.first_failure_example if failed else None,
            first_failure_seconds=self.first_failure_seconds if failed else None,
            replay_file=replay,
            crashed=crash,
            labels=dict(labels),
            channel=dict(channel),
            budget=plan.examples,
            seed=plan.seed,
            rule_steps=sum(r.rule_steps or 0 for r in results),
            rules=sum(r.rules or 0 for r in results),
            failing_examples=sum(r.failing_examples for r in results),
            budget_seconds=plan.seconds,
            workers=plan.workers,
        )
        if self._on_progress is not None:
            self._on_progress(finished_progress(merged))
        return merged

    def _settle_replay_files(self, chosen: CampaignResult | None) -> Path | None:
        """Move the chosen failure's replay file to the run's path; drop the others."""
        target = self._plan.replay_file
        if target is None:
            return None
        kept: Path | None = None
        for index in range(self._plan.workers):
            path = worker_replay_file(target, index)
            if chosen is not None and chosen.replay_file == path and path.exists():
                os.replace(path, target)
                kept = target
            else:
                path.unlink(missing_ok=True)
        return kept


def _empty(plan: _Plan) -> CampaignResult:
    return CampaignResult(
        canaries=plan.spec.canaries,
        examples=0,
        seconds=0.0,
        anomaly_kinds=(),
        first_failure_example=None,
        first_failure_seconds=None,
        shrunk_steps=None,
        replay_file=None,
        replicas=plan.spec.replicas,
        backend=plan.spec.backend,
    )


def _work(
    worker: int,
    plan: _Plan,
    messages: multiprocessing.Queue[_Tick | _Finished | _WorkerCrashed],
    claims: Any,
    next_campaign: Any,
    claimed_examples: Any,
    stop: Any,
) -> None:
    """A worker's life: claim a campaign, run it, until the run is over."""
    try:
        campaigns: list[tuple[int, CampaignResult]] = []
        done = 0
        replay = None if plan.replay_file is None else worker_replay_file(plan.replay_file, worker)

        def report(progress: Progress) -> None:
            if progress.finished:
                return
            if progress.found:
                stop.set()  # the others start nothing new; this one shrinks
            messages.put(
                _Tick(
                    worker=worker,
                    examples=done + progress.examples,
                    failing_examples=progress.failing_examples,
                    anomaly_kinds=progress.anomaly_kinds,
                )
            )

        while not stop.is_set():
            # As in run_within, the budget is checked between campaigns: every worker
            # runs one, even if starting the processes took the whole budget.
            over = plan.seconds is not None and time.monotonic() - plan.started >= plan.seconds
            if campaigns and over:
                break
            with claims:
                size = plan.spec.chunk
                if plan.examples is not None:
                    size = min(size, plan.examples - claimed_examples.value)
                    if size <= 0:
                        break
                    claimed_examples.value += size
                index = next_campaign.value
                next_campaign.value += 1
            campaign = dataclasses.replace(
                plan.spec,
                examples=size,
                seconds=None,
                seed=plan.seed + index,
                replay_file=replay,
                workers=1,
            )
            result = run_one_campaign(campaign, on_progress=report)
            campaigns.append((index, result))
            done += result.examples
            if result.found or result.crashed:
                stop.set()
                break
        messages.put(_Finished(worker=worker, campaigns=campaigns))
    except BaseException as exc:  # the parent must hear of it, whatever it was
        lines = traceback.format_exception_only(type(exc), exc)
        messages.put(_WorkerCrashed(worker=worker, error="".join(lines).strip()[:2000]))
        raise
