"""``streamcheck run --backend sim --impl CMD``: the simulation for foreign replicas, and
``streamcheck replay`` of its replay files."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streamcheck.properties.protocol import agent_command
from streamcheck.properties.report import TIMELINE_FILENAME
from streamcheck.properties.sim.resp._machine import (
    DEFAULT_REPRODUCTION,
    REPLAY_SCHEMA,
    ForeignCampaign,
    ForeignFault,
    ReproductionRule,
    replay_foreign,
    run_foreign_campaign,
)
from streamcheck.properties.sim.resp._world import FOREIGN_SETTINGS, WorldFailed

__all__ = ["is_foreign_replay", "replay_foreign_file", "run_foreign"]

EXIT_OK, EXIT_ANOMALY, EXIT_USAGE = 0, 1, 2
DEFAULT_EXAMPLES = 100
REPLAYS = 3
PROGRESS_EVERY = 50


class ForeignUsageError(ValueError):
    """An option that does not apply to foreign replicas, or an agent that cannot start."""


def run_foreign(args: argparse.Namespace) -> int:
    for given, name in (
        (args.canary, "--canary"),
        (args.coverage, "--coverage"),
        (args.workers != 1, "--workers"),
        (args.budget is not None, "--budget"),
        (args.soak or args.plan, "--soak and --plan"),
    ):
        if given:
            raise ForeignUsageError(
                f"streamcheck run: {name} does not apply to --backend sim --impl"
            )
    try:
        impls = [agent_command(impl) for impl in args.impl]
    except ValueError as exc:
        raise ForeignUsageError(f"streamcheck run: --impl: {exc}") from None
    faults = frozenset(ForeignFault)
    if args.faults:
        known = {fault.value: fault for fault in ForeignFault}
        words = [word.strip() for word in args.faults.split(",") if word.strip()]
        unknown = [word for word in words if word not in known]
        if unknown:
            raise ForeignUsageError(
                f"streamcheck run: --faults with --backend sim --impl takes {', '.join(known)}, "
                f"not {', '.join(unknown)}"
            )
        faults = frozenset(known[word] for word in words)
    reproduction = DEFAULT_REPRODUCTION
    if args.reproduce is not None:
        reproduction = ReproductionRule(*args.reproduce)
    replicas = args.replicas if args.replicas is not None else 2
    commands = [impls[i % len(impls)] for i in range(replicas)]
    examples = args.examples if args.examples is not None else DEFAULT_EXAMPLES
    seed = args.seed if args.seed is not None else 0
    replay_file: Path = args.reports / "failures" / "foreign.json"
    replay_file.unlink(missing_ok=True)
    print(
        f"foreign simulation: {examples} examples, {replicas} replicas "
        f"({' | '.join(args.impl)}), seed {seed}, fault families "
        f"{', '.join(sorted(f.value for f in faults)) or 'none'}; RESP front over the "
        "simulated Redis",
        flush=True,
    )
    started = time.monotonic()

    def progress(started_examples: int) -> None:
        if started_examples > 1 and (started_examples - 1) % PROGRESS_EVERY == 0:
            done = started_examples - 1
            print(f"  {done} examples, {time.monotonic() - started:.0f} s", flush=True)

    try:
        campaign = run_foreign_campaign(
            commands,
            examples=examples,
            seed=seed,
            replay_file=replay_file,
            on_example=progress,
            faults=faults,
            reproduction=reproduction,
        )
    except WorldFailed as exc:
        raise ForeignUsageError(f"streamcheck run: the agents did not start: {exc}") from None
    _summarize(campaign)
    if not campaign.failed:
        return EXIT_OK
    if campaign.report is not None:
        print(campaign.report.summary())
    if campaign.crash is not None:
        print(f"the foreign world failed: {campaign.crash}")
    print(
        f"failing example: {campaign.found_decisions} decisions, minimized to "
        f"{len(campaign.minimized)} ({campaign.minimize_candidates} candidates in "
        f"{campaign.minimize_replays} replays, each kept only when it reproduced "
        f"{reproduction} replays"
        f"{'; stopped by its deadline' if campaign.minimize_out_of_time else ''}):"
    )
    for decision in campaign.minimized:
        print(f"  {decision}")
    print(f"replay file: {replay_file}")
    timeline = replay_file.parent / TIMELINE_FILENAME
    if timeline.exists():
        print(f"timeline: {timeline}")
    print("minimized list: " + replay_foreign(replay_file, reproduction.runs).describe())
    return EXIT_ANOMALY


def _summarize(campaign: ForeignCampaign) -> None:
    rules_s = max(campaign.busy_s, 1e-9)
    unwaited_s = max(campaign.busy_s - campaign.waited_s, 1e-9)
    print(
        f"{campaign.examples} examples in {campaign.seconds:.1f} s: {campaign.rule_steps} rule "
        f"steps, {campaign.decisions} decisions; {campaign.rule_steps / rules_s:.1f} rule "
        f"steps/s in the rules' {rules_s:.1f} s ({campaign.quiet_s:.1f} s waiting for quiet, "
        f"{campaign.waited_s:.1f} s of timer waits, harness clocks moved "
        f"{campaign.advanced_s:.1f} s; "
        f"{campaign.rule_steps / unwaited_s:.1f}/s without those waits); agents started in "
        f"{campaign.start_s:.1f} s, heal phases {campaign.heal_s:.1f} s; "
        f"late activity {campaign.late_activity}, quiet waits cut off at their limit "
        f"{campaign.never_quiet}; replica timers "
        f"{', '.join(f'{k}={v:g}' for k, v in FOREIGN_SETTINGS.items())}"
    )
    made = ", ".join(f"{name} {n}" for name, n in sorted(campaign.faults_made.items()))
    print(f"fault decisions: {made or 'none'}")
    print("anomalies: none" if not campaign.failed else "anomalies: FOUND", flush=True)


def is_foreign_replay(path: Path) -> bool:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("schema") == REPLAY_SCHEMA


def replay_foreign_file(path: Path, runs: int = REPLAYS) -> int:
    raw = json.loads(path.read_text())
    impls = " | ".join(" ".join(command) for command in raw["impl"])
    print(f"replaying {len(raw['decisions'])} decisions from {path} ({impls}):")
    for name, args in raw["decisions"]:
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        print(f"  {name}({inner})")
    started = time.monotonic()
    verdict = replay_foreign(path, runs)
    print(f"recorded anomaly: {verdict.anomaly}")
    print(f"{verdict.describe()} in {time.monotonic() - started:.1f} s")
    return EXIT_ANOMALY if verdict.reproduced else EXIT_OK
