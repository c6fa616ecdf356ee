"""The ``streamcheck`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import trio

from streamcheck.properties._cli_args import (
    directory,
    integer,
    k_of_n,
    names,
    patterns,
    redis_url,
    seconds,
)
from streamcheck.properties._run_limits import (
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    MAX_WORKERS,
    MIN_REPLICAS,
    SimBackend,
)
from streamcheck.properties.canaries import PROFILES, parse_canaries

if TYPE_CHECKING:
    from streamcheck.properties._campaign import CampaignResult
    from streamcheck.properties._impl_coverage import ImplCoverage

#: 1 means "anomaly found" and nothing else, so scripts and CI can tell a finding from
#: a mistake in how the command was called.
EXIT_OK, EXIT_ANOMALY, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
#: Ctrl-C (or SIGTERM on the real tier), as a shell reports a SIGINT death.
EXIT_INTERRUPTED = 130
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
_USAGE_AND_INTERNAL = (
    "2 usage or environment error (one line on stderr), 3 internal error (one line\n"
    "naming the log file that holds the traceback), 130 interrupted"
)


class UsageError(Exception):
    """The command line asks for something that cannot run; the message says why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's usage block: the error names the argument.
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _demo(args: argparse.Namespace) -> int:
    from streamcheck.properties.demo import run_demo

    backend = args.backend or ("redis" if args.redis_url else "memory")
    if backend == "memory" and args.redis_url:
        raise UsageError("streamcheck demo: --redis-url applies to --backend redis")
    url = args.redis_url or DEFAULT_REDIS_URL
    print(f"three replicas on the {backend} backend")
    result = trio.run(lambda: run_demo(backend=backend, redis_url=url))
    print()
    print(result.answer)
    print()
    verdict = "OK: nothing lost, nothing duplicated" if result.ok else "MISMATCH"
    print(
        f"{verdict} ({result.events} events in {result.seconds:.3f} s, "
        f"{result.events / result.seconds:.0f} events/s including pacing)"
    )
    return EXIT_OK if result.ok else EXIT_ANOMALY


def _run(args: argparse.Namespace) -> int:
    from streamcheck.properties._campaign import CampaignSpec, required_labels
    from streamcheck.properties._progress import ProgressBar
    from streamcheck.properties._run_report import (
        ReportSpec,
        command_line,
        exit_code,
        new_run_dir,
        run_and_report,
    )

    if args.backend == SimBackend.MEMORY.value and args.impl:
        raise UsageError(
            "streamcheck run: --impl applies to --backend sim|redis|cluster (the memory "
            "backend is impl/'s own, in the simulation's process)"
        )
    if args.backend == "sim" and args.impl:
        from streamcheck.properties.sim.resp._cli import ForeignUsageError, run_foreign

        try:
            return run_foreign(args)
        except ForeignUsageError as exc:
            raise UsageError(str(exc)) from None
    if args.reproduce is not None:
        raise UsageError("streamcheck run: --reproduce applies to --backend sim --impl")
    simulated = {b.value for b in SimBackend}
    if args.backend not in simulated:
        for given, name in ((args.run_dir, "--run-dir"), (args.workers != 1, "--workers")):
            if given:
                raise UsageError(f"streamcheck run: {name} applies to --backend sim|memory")
        return _run_real(args)
    if args.soak or args.faults or args.plan:
        raise UsageError(
            "streamcheck run: --soak, --faults and --plan apply to --backend redis|cluster"
        )
    backend = SimBackend(args.backend)
    if args.coverage and args.backend == SimBackend.MEMORY.value:
        raise UsageError(
            "streamcheck run: --coverage judges the branch classes of the Redis backend: "
            "use --backend sim"
        )
    if args.coverage and args.workers > 1:
        raise UsageError("streamcheck run: --coverage measures one process: use --workers 1")
    if args.coverage and importlib.util.find_spec("coverage") is None:
        raise UsageError(
            "streamcheck run: --coverage needs coverage.py: pip install 'streamcheck[quality]'"
        )
    canaries = args.canary | (PROFILES[args.profile] if args.profile else frozenset())
    replicas = args.replicas if args.replicas is not None else DEFAULT_REPLICAS
    reports: Path = args.reports
    replay = reports / "failures" / "run.json"
    replay.unlink(missing_ok=True)
    label = ", ".join(sorted(c.value for c in canaries)) or "none"
    in_workers = f" in {args.workers} worker processes" if args.workers > 1 else ""
    # Bounded by time: campaigns until the budget is spent (and at most --examples, if
    # given); else --examples (several workers share them out in campaigns).
    examples: int | None = args.examples
    if args.budget is None and examples is None:
        examples = 300
    spec = CampaignSpec(
        canaries=canaries,
        examples=examples,
        seconds=args.budget,
        seed=args.seed,
        replay_file=replay,
        replicas=replicas,
        workers=args.workers,
        required_labels=frozenset() if args.allow_unreached else required_labels(backend),
        backend=backend,
    )
    over = " on the memory backend" if backend is SimBackend.MEMORY else ""
    if spec.seconds is not None:
        cap = f"at most {spec.examples} examples" if spec.examples else "examples"
        print(
            f"simulation: {cap} within {spec.seconds:g} s{in_workers}, {replicas} replicas"
            f"{over}, canaries: {label}",
            flush=True,
        )
    else:
        print(
            f"simulation: {spec.examples} examples{in_workers}, {replicas} replicas{over}, "
            f"canaries: {label}",
            flush=True,
        )
    reporting = ReportSpec(
        command=command_line("streamcheck", args.argv),
        run_dir=lambda started: args.run_dir or new_run_dir(reports, started),
        backend=backend.value,
        clean_runs=True,
        timeline_on_crash=False,
        impl_coverage=args.coverage,
    )
    bar = ProgressBar()

    def say_verdict(result: CampaignResult, impl_coverage: ImplCoverage | None) -> None:
        bar.clear()
        print(f"{result.examples} examples in {result.seconds:.1f} s")
        if result.crashed:
            shrunk = f" ({result.shrink_summary()})" if result.shrunk_steps is not None else ""
            print(f"the run crashed{shrunk}: {result.crashed}")
        elif not result.found:
            print("no anomaly found")
        else:
            kinds = ", ".join(k.value for k in result.anomaly_kinds)
            print(
                f"ANOMALY: {kinds} (first failing example #{result.first_failure_example} "
                f"after {result.first_failure_seconds:.1f} s; {result.shrink_summary()})"
            )
        if result.channel:
            print(
                f"channel: {result.channel.get('foreign_hints', 0):,} untrusted messages the "
                f"log did not confirm, {result.channel.get('malformed_dropped', 0):,} "
                f"malformed, {result.channel.get('unconfirmed_aborts', 0):,} abort signals "
                "no abort claimed, dropped"
            )
        if not (result.found or result.crashed):
            _say_unreached(result, impl_coverage)

    try:
        reported = run_and_report(spec, reporting, on_progress=bar, before_writing=say_verdict)
    finally:
        bar.clear()  # also on Ctrl-C, so the traceback starts on a clean line
    data, run_dir = reported.results, reported.run_dir
    assert data is not None and run_dir is not None  # clean runs are reported too
    if data["replay_command"]:
        replay_copy = run_dir / data["files"]["replay_file"]
        print(f"replay file: {replay_copy}  ({data['replay_command']})")
    if data["files"]["timeline"]:
        print(f"timeline:    {run_dir / data['files']['timeline']}  (open it in a browser)")
    print(f"report:      {run_dir / data['files']['summary']} and {data['files']['results']}")
    return exit_code(reported.result, reported.impl_coverage)


def _say_unreached(result: CampaignResult, impl_coverage: ImplCoverage | None) -> None:
    """Say which required paths a clean run never reached (they make it exit 1)."""
    if result.unreached_labels:
        print(
            f"NOT REACHED: rare paths the run must reach: {', '.join(result.unreached_labels)} "
            "(a clean run means little without them: raise --examples or --budget)"
        )
    if impl_coverage is None:
        return
    for verdict in impl_coverage.verdicts():
        if verdict.missed:
            print(f"NOT REACHED: impl/ {verdict.name}: {', '.join(verdict.missed)}")
        if verdict.stale:
            print(
                f"STALE: impl/ {verdict.name} names code that is gone: "
                f"{', '.join(verdict.stale)} (update properties/_impl_coverage.py)"
            )


def _run_real(args: argparse.Namespace) -> int:
    import shutil
    import time

    from streamcheck.properties.protocol import AgentFailed, ProtocolError, agent_command
    from streamcheck.properties.realredis._harness import (
        PROFILES,
        Backend,
        FaultKind,
        probe_faults,
        run_tier,
    )
    from streamcheck.properties.realredis._plan import load_plans
    from streamcheck.properties.realredis._report import run_line, table, to_json, write

    if args.canary or args.profile:
        raise UsageError("streamcheck run: canaries run in the simulation only (--backend sim)")
    impls = args.impl or ["python"]
    try:
        commands = [agent_command(impl) for impl in impls]
    except ValueError as exc:
        raise UsageError(f"streamcheck run: --impl: {exc}") from None
    if args.budget is not None:
        raise UsageError(
            "streamcheck run: --budget applies to --backend sim (the real tier runs "
            "--examples runs per fault kind)"
        )
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise UsageError(
                f"streamcheck run: {tool} is not on PATH; install Redis (Debian: apt-get "
                "install redis-server) or use --backend sim"
            )
    backend = Backend(args.backend)
    try:
        plans = load_plans(Path(args.plan)) if args.plan else None
    except (OSError, ProtocolError) as exc:
        raise UsageError(f"streamcheck run: --plan: {exc}") from None
    # Which faults apply depends on where the implementation keeps its streams: ask it.
    try:
        applicable, own_server = probe_faults(backend, commands)
    except AgentFailed as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_ANOMALY
    profile = PROFILES["soak" if args.soak else "short"]
    if args.replicas is not None:
        profile = dataclasses.replace(
            profile, workload=dataclasses.replace(profile.workload, replicas=args.replicas)
        )
    try:
        faults = (
            tuple(FaultKind(name.strip()) for name in args.faults.split(",") if name.strip())
            if args.faults
            else applicable
        )
    except ValueError:
        known = ", ".join(f.value for f in applicable)
        raise UsageError(
            f"streamcheck run: unknown fault in --faults {args.faults!r}; known: {known}"
        ) from None
    unsupported = [f.value for f in faults if f not in applicable]
    if unsupported:
        where = "an implementation with its own server" if own_server else "this implementation"
        raise UsageError(
            f"streamcheck run: {', '.join(unsupported)} cannot run on --backend {backend.value} "
            f"with {where}"
        )
    seed = args.seed if args.seed is not None else 1
    runs = args.examples if args.examples is not None else profile.runs_per_fault
    # A terminated run must still stop its servers and agents: make SIGTERM unwind
    # like Ctrl-C, through every context manager that owns a process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(
        f"real {backend.value}: profile {profile.name}, "
        f"{len(plans) if plans else profile.workload.replicas} replicas, "
        f"{runs} run(s) per fault, {len(faults)} fault kinds, seed {seed}"
    )
    started = time.monotonic()
    figures = trio.run(
        lambda: run_tier(
            backend,
            profile,
            seed=seed,
            runs_per_fault=runs,
            faults=faults,
            on_run=lambda result: print(run_line(result), flush=True),
            keep_failures=args.reports / "realredis-failures",
            commands=commands,
            plans=plans,
        )
    )
    print()
    implementation = next((f.implementation for f in figures if f.implementation), "unknown")
    print(f"implementation: {implementation} ({' | '.join(impls)})")
    not_made = next((f.not_exercised for f in figures if f.not_exercised), [])
    if not_made:
        print(f"promises it does not make (not judged): {'; '.join(not_made)}")
    print(table(figures))
    path = write(to_json(backend, profile, seed, figures, time.monotonic() - started), args.reports)
    print(f"\nfigures written to {path}")
    found = any(f.anomalies or f.agent_failures for f in figures)
    return EXIT_ANOMALY if found else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from streamcheck.properties._replay import load_replay, replay_twice
    from streamcheck.properties._replay_schema import ReplayFileError, replay_backend
    from streamcheck.properties.sim.resp._cli import is_foreign_replay, replay_foreign_file

    path: Path = args.file
    if is_foreign_replay(path):
        return replay_foreign_file(path)
    try:
        decisions, canaries, replicas, data = load_replay(path)
        backend = replay_backend(data)
    except (OSError, ReplayFileError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"streamcheck replay: {path}: {reason}") from exc
    print(f"replaying {len(decisions)} decisions from {path}:")
    for decision in decisions:
        print(f"  {decision}")
    result, deterministic = replay_twice(
        decisions, canaries=canaries, replicas=replicas, backend=backend
    )
    if result.crashed:
        print(f"the simulated world CRASHED (a bug in impl/ or the harness):\n{result.crashed}")
    print(result.report.summary())
    print(f"deterministic: {'yes' if deterministic else 'NO (two replays differed)'}")
    recorded = data.get("history")
    if recorded is not None:
        same = recorded == result.history
        print(f"same history as recorded: {'yes' if same else 'no'}")
    return EXIT_OK if result.report.ok and not result.crashed else EXIT_ANOMALY


def _canaries(args: argparse.Namespace) -> int:
    from streamcheck.properties._canary_report import run_canaries
    from streamcheck.properties._progress import ProgressBar

    bar = ProgressBar()
    try:
        rows = run_canaries(
            examples=args.examples,
            seed=args.seed,
            reports=args.reports,
            progress=lambda line: print(line, flush=True),
            on_progress=bar,
            workers=args.workers,
            only=args.only or None,
        )
    finally:
        bar.clear()
    print(f"wrote {args.reports / 'canaries.md'} and canaries.json")
    missed = [name for name, r in rows if name[0] != "(" and not r.found]
    control_failed = any(name[0] == "(" and (r.found or r.crashed) for name, r in rows)
    return EXIT_ANOMALY if (missed or control_failed) else EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from streamcheck.properties.bench import BenchOptions, exit_code, run_benchmarks

    options = BenchOptions(
        quick=args.quick, redis_url=args.redis_url, only=args.only, reports=args.reports
    )
    try:
        report, _ = run_benchmarks(options)
    except OSError as exc:
        raise OSError(f"cannot write the bench report: {exc}") from exc
    return exit_code(report)


def _mutants(args: argparse.Namespace) -> int:
    import json

    from streamcheck.properties._mutants import (
        NOT_SIMULATED,
        MutantsError,
        render,
        run_mutants,
        to_json,
    )
    from streamcheck.properties._run_report import command_line, utc_now

    for name, value in (("--sample", args.sample), ("--examples", args.examples)):
        if value < 1:
            raise UsageError(f"streamcheck mutants: {name} must be at least 1, not {value}")
    for name, budget in (("--budget", args.budget), ("--timeout", args.timeout)):
        if budget is not None and budget <= 0:
            raise UsageError(
                f"streamcheck mutants: {name} must be positive seconds, not {budget:g}"
            )
    print(
        f"mutants: a sample of {args.sample} (seed {args.seed}) of impl/'s mutations, each "
        f"against a campaign of {args.examples} examples",
        flush=True,
    )
    try:
        result = run_mutants(
            sample=args.sample,
            sample_seed=args.seed,
            examples=args.examples,
            budget=args.budget,
            timeout=args.timeout,
            exclude=() if args.all_modules else NOT_SIMULATED,
            include=args.modules,
            on_mutant=lambda i, n, m: print(
                f"  {i}/{n} {m.module}:{m.line} {m.operator}: {m.verdict} ({m.seconds:.1f} s)",
                flush=True,
            ),
        )
    except MutantsError as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = command_line("streamcheck", args.argv)
    date = utc_now().date().isoformat()
    reports = Path(args.reports)
    try:
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "mutation.md").write_text(render(result, command=command, date=date))
        document = to_json(result, command=command, date=date)
        (reports / "mutation.json").write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        print(f"streamcheck: cannot write the mutation report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    score = result.score()
    counts = result.counts()
    print(
        f"score {'-' if score is None else f'{score:.1f} %'}: "
        + ", ".join(f"{verdict} {n}" for verdict, n in sorted(counts.items()))
        + f" in {result.seconds:.0f} s"
    )
    print(f"report: {reports / 'mutation.md'} and mutation.json")
    return EXIT_OK


def _bench_names(text: str) -> tuple[str, ...]:
    from streamcheck.properties.bench import parse_only

    return parse_only(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamcheck",
        description="Resumable LLM generation streams: reference implementation and checks.",
        epilog=f"exit codes: 0 ok, 1 anomaly found, {_USAGE_AND_INTERNAL}",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="a client drops from one replica mid-answer and resumes on another",
        description=(
            "Run a generation on replica A, attach a client on replica B mid-answer, drop\n"
            "it, resume it on replica C, and check the assembled answer.\n\n"
            "exit codes: 0 the answer arrived whole, 1 words were lost or repeated,\n"
            f"{_USAGE_AND_INTERNAL}\n\n"
            "examples:\n  streamcheck demo\n"
            "  streamcheck demo --backend redis\n"
            "  streamcheck demo --redis-url redis://127.0.0.1:6380/2"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--backend",
        choices=["memory", "redis"],
        default=None,
        help="where the replicas share their streams (default memory; redis with --redis-url)",
    )
    demo.add_argument(
        "--redis-url",
        type=redis_url,
        default=None,
        metavar="URL",
        help=f"the Redis to use: redis://, rediss:// or unix:// (default {DEFAULT_REDIS_URL}); "
        "giving one implies --backend redis, since a URL says where to run",
    )
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run",
        help="run the simulation, or the workload against real Redis with faults",
        description=(
            "Drive replicas from impl/ over a simulated Redis whose every delivery is a\n"
            "test-drawn choice, check each history, and write a replay file on failure.\n"
            "The simulation writes summary.md and results.json (schema streamcheck.run/1,\n"
            "see reports/README.md) to <reports>/runs/<UTC timestamp>/, with copies of the\n"
            "replay file and timeline.html when an example failed. On a terminal a progress\n"
            "bar is drawn on stderr.\n\n"
            "A clean run without canaries must also reach the rare paths CI requires\n"
            "(REQUIRED_LABELS); one that does not exits 1 and says which.\n\n"
            "exit codes: 0 nothing found, 1 anomaly found (a crash of impl/ in the simulated\n"
            "world counts, and so does a required path never reached),\n"
            f"{_USAGE_AND_INTERNAL}\n\n"
            "examples:\n  streamcheck run --examples 500\n"
            "  streamcheck run --canary force-flush-skips-gap --examples 500\n"
            "  streamcheck run --profile librechat-2026-02-10\n"
            "  streamcheck run --replicas 3 --examples 500\n"
            "  streamcheck run --backend memory --examples 500  # the memory bus and hub\n"
            "  streamcheck run --coverage                   # and which impl/ code ran\n"
            "  streamcheck run --budget 600                 # as many examples as 10 min allow\n"
            "  streamcheck run --budget 600 --workers 2     # the same on two cores\n"
            "  streamcheck run --backend redis              # real redis-server, every fault\n"
            "  streamcheck run --backend cluster --soak     # 3-master cluster, longer runs\n"
            "  streamcheck run --backend redis --faults redis-pause,replica-sigkill\n"
            "  streamcheck run --backend redis --impl 'node my-port/agent.js'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--backend",
        choices=["sim", "memory", "redis", "cluster"],
        default="sim",
        help="sim: the simulated Redis (default); memory: the same state machine over "
        "impl/'s in-process memory backend; "
        "redis|cluster: real redis-server processes",
    )
    run.add_argument(
        "--examples",
        type=integer(1),
        default=None,
        help="sim: examples (default 300); redis|cluster: runs per fault kind",
    )
    run.add_argument("--soak", action="store_true", help="redis|cluster: the longer profile")
    run.add_argument(
        "--impl",
        action="append",
        metavar="CMD",
        help="the implementation under test, as the command that starts one replica agent "
        "speaking the replica protocol (docs/port-protocol.md); with --backend sim its "
        "replicas meet the simulated Redis through the RESP front; "
        "'python' (the default) is streamcheck's own. Given more than once, replica i runs "
        "the (i mod n)-th command: a mixed run of implementations on the same streams",
    )
    run.add_argument(
        "--faults",
        default="",
        help="redis|cluster: comma-separated fault kinds (default all); sim with --impl: "
        "the fault families examples may switch on, of drop, cut, clock, failover (default all)",
    )
    run.add_argument(
        "--reproduce",
        type=k_of_n,
        default=None,
        metavar="K/N",
        help="sim with --impl: the minimizer keeps a shorter decision list only when at "
        "least K of N replays show the anomaly (default 2/3); the final list is then "
        "replayed N times",
    )
    run.add_argument(
        "--replicas",
        type=integer(MIN_REPLICAS, MAX_REPLICAS),
        default=None,
        help=f"replicas of impl/ in each world, {MIN_REPLICAS} to {MAX_REPLICAS} "
        f"(default: sim {DEFAULT_REPLICAS}, redis|cluster the profile's)",
    )
    run.add_argument(
        "--budget",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="sim: run short campaigns one after another until SECONDS have passed "
        "(with --examples, whichever comes first; checked between campaigns)",
    )
    run.add_argument(
        "--workers",
        type=integer(1, MAX_WORKERS),
        default=1,
        metavar="N",
        help=f"sim: run campaigns in N processes at once, 1 to {MAX_WORKERS} (one per core "
        "is the most that helps); the examples or the time budget are shared among them",
    )
    run.add_argument(
        "--plan",
        default="",
        metavar="FILE",
        help="redis|cluster: run this saved plan (a failing run keeps its plans.json) "
        "instead of drawing one per run",
    )
    run.add_argument("--seed", type=int, default=None, help="derandomize the search")
    run.add_argument(
        "--coverage",
        action="store_true",
        help="sim: measure which impl/ code the campaign ran (coverage.py) and write a "
        "per-module table into the run report; exit 1 if a branch class that matters "
        "(fence refusals, cross-replica aborts, job-store transitions) was never reached",
    )
    run.add_argument(
        "--allow-unreached",
        action="store_true",
        help="sim: a clean run that never reached a required rare path exits 0 (for smoke "
        "runs too small to reach them)",
    )
    run.add_argument(
        "--canary",
        type=names(parse_canaries),
        default=frozenset(),
        help="comma-separated canary names",
    )
    run.add_argument("--profile", default="", choices=list(PROFILES), help="canary profile")
    run.add_argument(
        "--reports",
        type=directory,
        default=Path("reports"),
        help="where replay files (failures/) and per-run reports (runs/<UTC timestamp>/) go",
    )
    run.add_argument(
        "--run-dir",
        type=directory,
        default=None,
        help="sim: write this run's summary.md and results.json here instead of "
        "<reports>/runs/<UTC timestamp>/",
    )
    run.set_defaults(handler=_run)

    replay = commands.add_parser(
        "replay",
        help="re-run a replay file without Hypothesis and print its anomalies",
        description=(
            "Re-run the decisions of a replay file (reports/README.md) twice, check that\n"
            "both runs agree, and print the checker's report. The file is validated first;\n"
            "an error names the field, e.g. decisions[3].args.replica.\n\n"
            "exit codes: 0 no anomaly, 1 anomaly found (or the simulated world crashed),\n"
            f"{_USAGE_AND_INTERNAL}\n\n"
            "examples:\n  streamcheck replay reports/failures/run.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file", type=Path)
    replay.set_defaults(handler=_replay)

    canaries = commands.add_parser(
        "canaries",
        help="measure how fast the simulation finds each historical bug",
        description=(
            "Run the state machine against every canary and the correct implementation;\n"
            "write reports/canaries.md and .json.\n\n"
            "exit codes: 0 every canary found and the control clean, 1 a canary was missed\n"
            f"or the control run found an anomaly, {_USAGE_AND_INTERNAL}\n\n"
            "examples:\n  streamcheck canaries\n  streamcheck canaries --examples 1000 --seed 0\n"
            "  streamcheck canaries --workers 2           # two campaigns at a time"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    canaries.add_argument("--examples", type=integer(1), default=500)
    canaries.add_argument("--seed", type=int, default=None)
    canaries.add_argument("--reports", type=directory, default=Path("reports"))
    canaries.add_argument(
        "--only",
        type=names(parse_canaries),
        default=frozenset(),
        metavar="NAMES",
        help="comma-separated canaries (default all)",
    )
    canaries.add_argument(
        "--workers",
        type=integer(1, MAX_WORKERS),
        default=1,
        metavar="N",
        help=f"run N campaigns at once, 1 to {MAX_WORKERS}, each in its own process "
        "(one per core at most)",
    )
    canaries.set_defaults(handler=_canaries)

    mutants = commands.add_parser(
        "mutants",
        help="mutation score of impl/ with the simulation as the only test",
        description=(
            "Sample impl/'s mutations (Cosmic Ray's operators), run one state-machine\n"
            "campaign against each in a copy of the package, and write\n"
            "<reports>/mutation.md (by module, surviving mutants listed) and\n"
            "mutation.json. See docs/mutation.md.\n\n"
            "exit codes: 0 the report was written (whatever the score),\n"
            f"{_USAGE_AND_INTERNAL} (a campaign that fails on unmutated code is 2)\n\n"
            "examples:\n  streamcheck mutants --sample 40\n"
            "  streamcheck mutants --sample 200 --budget 1800   # the nightly figure\n"
            "  streamcheck mutants --modules 'transport/_memory_bus.py,jobstore/_memory.py'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mutants.add_argument("--sample", type=int, default=40, help="mutants to run (default 40)")
    mutants.add_argument("--seed", type=int, default=0, help="which sample (default 0)")
    mutants.add_argument(
        "--examples", type=int, default=300, help="examples in each mutant's campaign"
    )
    mutants.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no mutant after SECONDS (the rest are reported 'not run')",
    )
    mutants.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per mutant (default: 3x the unmutated campaign + 10 s); a timeout kills",
    )
    mutants.add_argument(
        "--all-modules",
        action="store_true",
        help="also mutate the modules the simulation does not drive (NOT_SIMULATED)",
    )
    mutants.add_argument(
        "--modules",
        type=patterns,
        default=("*",),
        metavar="PATTERNS",
        help="mutate only impl/ modules matching one of these comma-separated patterns "
        "(paths under impl/, fnmatch: 'transport/_memory_bus.py,jobstore/_memory.py'; "
        "default all)",
    )
    mutants.add_argument("--reports", default="reports")
    mutants.set_defaults(handler=_mutants)

    bench = commands.add_parser(
        "bench",
        help="measure emit cost, latency, simulation speed, memory and throughput",
        description=(
            "Run the benchmarks, print each figure with its baseline, ratio and goal (met\n"
            "or not), and write <reports>/bench-<UTC timestamp>.json. Benchmarks:\n"
            "emit-cost, latency, sim-speed, idle-memory, throughput. If Redis is\n"
            "unreachable, the Redis benchmarks are reported as skipped and the others run.\n\n"
            "exit codes: 0 the benchmarks ran (whether or not goals were met), 2 usage or\n"
            "environment error (or a benchmark could not finish), 3 internal error (one\n"
            "line naming the log file that holds the traceback), 130 interrupted\n\n"
            "examples:\n  streamcheck bench\n  streamcheck bench --quick\n"
            "  streamcheck bench --only emit-cost,throughput --redis-url redis://127.0.0.1:6380"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, too small to judge goals"
    )
    bench.add_argument(
        "--redis-url",
        type=redis_url,
        default=DEFAULT_REDIS_URL,
        metavar="URL",
        help="redis://, rediss:// or unix:// (default %(default)s)",
    )
    bench.add_argument(
        "--only",
        type=names(_bench_names),
        default=(),
        help="comma-separated benchmark names (default all)",
    )
    bench.add_argument(
        "--reports", type=directory, default=Path("reports"), help="where the JSON report goes"
    )
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. Bad input and environment problems are
    one line on stderr (exit 2); an unexpected error is one line naming a log file
    with the traceback (exit 3)."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(arguments)
        args.argv = arguments
        code: int = args.handler(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("streamcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        problem = _environment_problem(exc)
        if problem is not None:
            print(f"streamcheck: {problem}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"streamcheck: internal error: {_internal_error_line(exc, arguments)}", file=sys.stderr
        )
        return EXIT_INTERNAL
    return code


def _environment_problem(exc: BaseException) -> OSError | None:
    """The Redis, file or network problem behind ``exc`` (``BackendUnavailable`` is an
    ``OSError`` too), if that is all it is: a trio nursery may wrap it in a group."""
    if isinstance(exc, BaseExceptionGroup):
        found, rest = exc.split(OSError)
        if found is None or rest is not None:
            return None
        first: BaseException = found
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        exc = first
    return exc if isinstance(exc, OSError) else None


def _internal_error_line(exc: BaseException, arguments: list[str]) -> str:
    """``exc`` in one line, naming the log file its traceback was written to."""
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="streamcheck-error-", suffix=".log", delete=False
        ) as log:
            log.write(f"streamcheck {' '.join(arguments)}\n\n")
            traceback.print_exception(exc, file=log)
    except OSError as log_error:
        return f"{summary} (the traceback could not be written: {log_error})"
    return f"{summary}; traceback in {log.name} (please report it)"


#: What ``pip install streamcheck`` leaves out; the ``harness`` extra brings them.
HARNESS_MODULES = ("hypothesis", "fakeredis", "greenlet")


def missing_harness() -> list[str]:
    """The harness's libraries that are not installed."""
    return [name for name in HARNESS_MODULES if importlib.util.find_spec(name) is None]


def run() -> None:
    """Console-script entry point."""
    missing = missing_harness()
    if missing:
        print(
            f"streamcheck: the command line needs the harness ({', '.join(missing)} not "
            "installed): pip install 'streamcheck[harness]'",
            file=sys.stderr,
        )
        sys.exit(EXIT_USAGE)
    sys.exit(main())


if __name__ == "__main__":
    run()
