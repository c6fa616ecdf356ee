"""The ``streamcheck`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from streamcheck.impl._canaries import PROFILES, Canary, parse_canaries
from streamcheck.impl._errors import BackendUnavailable
from streamcheck.properties._run_limits import (
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    MAX_WORKERS,
    MIN_REPLICAS,
)

EXIT_OK, EXIT_ANOMALY, EXIT_USAGE = 0, 1, 2


def _demo(args: argparse.Namespace) -> int:
    from streamcheck.properties.demo import run_demo

    print(f"two replicas on the {args.backend} backend; generator on A, client on B")
    try:
        result = trio.run(lambda: run_demo(backend=args.backend, redis_url=args.redis_url))
    except BackendUnavailable as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print()
    print(result.answer)
    print()
    verdict = "OK: nothing lost, nothing duplicated" if result.ok else "MISMATCH"
    print(
        f"{verdict} ({result.events} events in {result.seconds:.3f} s, "
        f"{result.events / result.seconds:.0f} events/s including pacing)"
    )
    return EXIT_OK if result.ok else EXIT_ANOMALY


def _workers_ok(workers: int) -> bool:
    """``--workers`` is in range; otherwise says so on stderr."""
    if 1 <= workers <= MAX_WORKERS:
        return True
    print(f"streamcheck: --workers must be 1 to {MAX_WORKERS}, not {workers}", file=sys.stderr)
    return False


def _canaries_from(args: argparse.Namespace) -> frozenset[Canary]:
    chosen: frozenset[Canary] = frozenset()
    if args.profile:
        if args.profile not in PROFILES:
            raise ValueError(f"unknown profile {args.profile!r}; known: {', '.join(PROFILES)}")
        chosen |= PROFILES[args.profile]
    if args.canary:
        chosen |= parse_canaries(args.canary)
    return chosen


def _run(args: argparse.Namespace) -> int:
    from streamcheck.properties._campaign import (
        CHUNK_EXAMPLES,
        campaign_settings,
        run_campaign,
        run_within,
    )
    from streamcheck.properties._progress import ProgressBar
    from streamcheck.properties._run_report import (
        RunInfo,
        command_line,
        exit_code,
        new_run_dir,
        utc_now,
        write_run_report,
    )

    if args.replicas is not None and not MIN_REPLICAS <= args.replicas <= MAX_REPLICAS:
        print(
            f"streamcheck: --replicas must be {MIN_REPLICAS} to {MAX_REPLICAS}, "
            f"not {args.replicas}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.backend == "sim" and args.impl:
        print(
            "streamcheck: --impl runs a foreign implementation against real Redis: use "
            "--backend redis or cluster (the simulation drives impl/ in-process)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.backend != "sim":
        if args.run_dir:
            print("streamcheck: --run-dir applies to --backend sim", file=sys.stderr)
            return EXIT_USAGE
        if args.workers != 1:
            print("streamcheck: --workers applies to --backend sim", file=sys.stderr)
            return EXIT_USAGE
        return _run_real(args)
    if args.soak or args.faults or args.plan:
        print(
            "streamcheck: --soak, --faults and --plan apply to --backend redis|cluster",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.budget is not None and args.budget <= 0:
        print(
            f"streamcheck: --budget must be positive seconds, not {args.budget:g}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.examples is not None and args.examples < 1:
        print(f"streamcheck: --examples must be at least 1, not {args.examples}", file=sys.stderr)
        return EXIT_USAGE
    if not _workers_ok(args.workers):
        return EXIT_USAGE
    try:
        canaries = _canaries_from(args)
    except ValueError as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    replicas = args.replicas if args.replicas is not None else DEFAULT_REPLICAS
    reports = Path(args.reports)
    replay = reports / "failures" / "run.json"
    replay.unlink(missing_ok=True)
    label = ", ".join(sorted(c.value for c in canaries)) or "none"
    started = utc_now()
    bar = ProgressBar()
    in_workers = f" in {args.workers} worker processes" if args.workers > 1 else ""
    examples_cap: int | None = args.examples
    if args.budget is not None:
        # Bounded by time: campaigns of CHUNK_EXAMPLES until the budget is spent (and
        # at most --examples, if given).
        chosen = campaign_settings(CHUNK_EXAMPLES)
        cap = f"at most {examples_cap} examples" if examples_cap else "examples"
        print(
            f"simulation: {cap} within {args.budget:g} s{in_workers}, {replicas} replicas, "
            f"canaries: {label}",
            flush=True,
        )
    else:
        examples = examples_cap = args.examples if args.examples is not None else 300
        # Several workers share the examples out in campaigns of CHUNK_EXAMPLES.
        chosen = campaign_settings(CHUNK_EXAMPLES if args.workers > 1 else examples)
        print(
            f"simulation: {examples} examples{in_workers}, {replicas} replicas, canaries: {label}",
            flush=True,
        )
    try:
        if args.workers > 1:
            from streamcheck.properties._parallel import run_in_workers

            result = run_in_workers(
                args.workers,
                seconds=args.budget,
                examples=examples_cap,
                canaries=canaries,
                seed=args.seed,
                replay_file=replay,
                on_progress=bar,
                replicas=replicas,
            )
        elif args.budget is not None:
            result = run_within(
                args.budget,
                examples=examples_cap,
                canaries=canaries,
                seed=args.seed,
                replay_file=replay,
                on_progress=bar,
                replicas=replicas,
            )
        else:
            result = run_campaign(
                canaries=canaries,
                seed=args.seed,
                replay_file=replay,
                hypothesis_settings=chosen,
                on_progress=bar,
                replicas=replicas,
            )
    finally:
        bar.clear()  # also on Ctrl-C, so the traceback starts on a clean line
    print(f"{result.examples} examples in {result.seconds:.1f} s")
    timeline: Path | None = None
    if result.crashed:
        shrunk = f" ({result.shrink_summary()})" if result.shrunk_steps is not None else ""
        print(f"the run crashed{shrunk}: {result.crashed}")
    elif not result.found:
        print("no anomaly found")
    else:
        kinds = ", ".join(k.value for k in result.anomaly_kinds)
        print(
            f"ANOMALY: {kinds} (first failing example #{result.first_failure_example} after "
            f"{result.first_failure_seconds:.1f} s; {result.shrink_summary()})"
        )
        if result.replay_file is not None:
            from streamcheck.properties.report import TIMELINE_FILENAME, write_timeline

            timeline = write_timeline(
                result.replay_file, result.replay_file.parent / TIMELINE_FILENAME
            )
    info = RunInfo(
        command=command_line("streamcheck", args.argv),
        backend="sim",
        settings=chosen,
        seed=args.seed,
        started=started,
        finished=utc_now(),
        replay_file=result.replay_file,
        timeline=timeline,
    )
    try:
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(reports, started)
        data = write_run_report(result, info, run_dir)
    except OSError as exc:
        print(f"streamcheck: cannot write the run report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if data["replay_command"]:
        replay_copy = run_dir / data["files"]["replay_file"]
        print(f"replay file: {replay_copy}  ({data['replay_command']})")
    if data["files"]["timeline"]:
        print(f"timeline:    {run_dir / data['files']['timeline']}  (open it in a browser)")
    print(f"report:      {run_dir / data['files']['summary']} and {data['files']['results']}")
    return exit_code(result)


def _run_real(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    import time

    from streamcheck.properties.protocol import (
        AgentFailed,
        ProtocolError,
        Storage,
        agent_command,
        read_hello,
    )
    from streamcheck.properties.realredis._harness import (
        PROFILES,
        Backend,
        FaultKind,
        applicable_faults,
        run_tier,
    )
    from streamcheck.properties.realredis._plan import load_plans
    from streamcheck.properties.realredis._report import run_line, table, to_json, write

    if args.canary or args.profile:
        print("streamcheck: canaries run in the simulation only (--backend sim)", file=sys.stderr)
        return EXIT_USAGE
    impls = args.impl or ["python"]
    try:
        commands = [agent_command(impl) for impl in impls]
    except ValueError as exc:
        print(f"streamcheck: --impl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.budget is not None:
        print(
            "streamcheck: --budget applies to --backend sim (the real tier runs "
            "--examples runs per fault kind)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(
                f"streamcheck: {tool} is not on PATH; install Redis (Debian: apt-get install "
                "redis-server) or use --backend sim",
                file=sys.stderr,
            )
            return EXIT_USAGE
    backend = Backend(args.backend)
    try:
        plans = load_plans(Path(args.plan)) if args.plan else None
    except (OSError, ProtocolError) as exc:
        print(f"streamcheck: --plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Which faults apply depends on where the implementation keeps its streams: ask it.
    try:
        with tempfile.TemporaryDirectory(prefix="streamcheck-hello-") as tmp:
            hellos = [trio.run(read_hello, command, Path(tmp)) for command in commands]
    except AgentFailed as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_ANOMALY
    own_server = any(h.capabilities.storage is Storage.OWN for h in hellos)
    applicable = applicable_faults(backend, own_server)
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
        print(f"streamcheck: unknown fault in {args.faults!r}; known: {known}", file=sys.stderr)
        return EXIT_USAGE
    unsupported = [f.value for f in faults if f not in applicable]
    if unsupported:
        where = "an implementation with its own server" if own_server else "this implementation"
        print(
            f"streamcheck: {', '.join(unsupported)} cannot run on --backend {backend.value} "
            f"with {where}",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
            keep_failures=Path(args.reports) / "realredis-failures",
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
    path = write(
        to_json(backend, profile, seed, figures, time.monotonic() - started), Path(args.reports)
    )
    print(f"\nfigures written to {path}")
    found = any(f.anomalies or f.agent_failures for f in figures)
    return EXIT_ANOMALY if found else EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from streamcheck.properties._replay import load_replay, replay_twice

    path = Path(args.file)
    try:
        decisions, canaries, replicas, data = load_replay(path)
    except (OSError, ValueError, KeyError) as exc:
        print(f"streamcheck: cannot read replay file {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"replaying {len(decisions)} decisions from {path}:")
    for decision in decisions:
        print(f"  {decision}")
    result, deterministic = replay_twice(decisions, canaries=canaries, replicas=replicas)
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

    if not _workers_ok(args.workers):
        return EXIT_USAGE
    try:
        only = parse_canaries(args.only) if args.only else None
    except ValueError as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar()
    try:
        rows = run_canaries(
            examples=args.examples,
            seed=args.seed,
            reports=Path(args.reports),
            progress=lambda line: print(line, flush=True),
            on_progress=bar,
            workers=args.workers,
            only=only,
        )
    finally:
        bar.clear()
    print(f"wrote {Path(args.reports) / 'canaries.md'} and canaries.json")
    missed = [name for name, r in rows if name[0] != "(" and not r.found]
    control_failed = any(name[0] == "(" and (r.found or r.crashed) for name, r in rows)
    return EXIT_ANOMALY if (missed or control_failed) else EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from streamcheck.properties.bench import (
        BenchOptions,
        check_redis_url,
        exit_code,
        parse_only,
        run_benchmarks,
    )

    try:
        only = parse_only(args.only)
        check_redis_url(args.redis_url)
    except ValueError as exc:
        print(f"streamcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = BenchOptions(
        quick=args.quick, redis_url=args.redis_url, only=only, reports=Path(args.reports)
    )
    try:
        report, _ = run_benchmarks(options)
    except OSError as exc:
        print(f"streamcheck: cannot write the bench report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return exit_code(report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamcheck",
        description="Resumable LLM generation streams: reference implementation and checks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="two replicas, a client that drops mid-answer and resumes",
        description=(
            "Run a generation on replica A, attach a client on replica B mid-answer, drop "
            "it, resume it, and check the assembled answer.\n\n"
            "examples:\n  streamcheck demo\n"
            "  streamcheck demo --backend redis --redis-url redis://127.0.0.1:6379"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--backend", choices=["memory", "redis"], default="memory")
    demo.add_argument("--redis-url", default="redis://127.0.0.1:6379")
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
            "exit codes: 0 nothing found, 1 anomaly found, 2 usage or environment error\n\n"
            "examples:\n  streamcheck run --examples 500\n"
            "  streamcheck run --canary force-flush-skips-gap --examples 500\n"
            "  streamcheck run --profile librechat-2026-02-10\n"
            "  streamcheck run --replicas 3 --examples 500\n"
            "  streamcheck run --budget 600                 # as many examples as 10 min allow\n"
            "  streamcheck run --budget 600 --workers 2     # the same on two cores\n"
            "  streamcheck run --backend redis              # real redis-server, every fault\n"
            "  streamcheck run --backend cluster --soak     # 3-master cluster, longer runs\n"
            "  streamcheck run --backend redis --faults redis-pause,replica-sigkill\n"
            "  streamcheck run --backend redis --impl 'node my-port/agent.js'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--backend", choices=["sim", "redis", "cluster"], default="sim")
    run.add_argument(
        "--examples",
        type=int,
        default=None,
        help="sim: examples (default 300); redis|cluster: runs per fault kind",
    )
    run.add_argument("--soak", action="store_true", help="redis|cluster: the longer profile")
    run.add_argument(
        "--impl",
        action="append",
        metavar="CMD",
        help="redis|cluster: the implementation under test, as the command that starts one "
        "replica agent speaking the replica protocol (docs/port-protocol.md); "
        "'python' (the default) is streamcheck's own. Given more than once, replica i runs "
        "the (i mod n)-th command: a mixed run of implementations on the same streams",
    )
    run.add_argument(
        "--faults", default="", help="redis|cluster: comma-separated fault kinds (default all)"
    )
    run.add_argument(
        "--replicas",
        type=int,
        default=None,
        help=f"replicas of impl/ in each world, {MIN_REPLICAS} to {MAX_REPLICAS} "
        f"(default: sim {DEFAULT_REPLICAS}, redis|cluster the profile's)",
    )
    run.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sim: run short campaigns one after another until SECONDS have passed "
        "(with --examples, whichever comes first; checked between campaigns)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="sim: run campaigns in N processes at once (one per core is the most that "
        "helps); the examples or the time budget are shared among them",
    )
    run.add_argument(
        "--plan",
        default="",
        metavar="FILE",
        help="redis|cluster: run this saved plan (a failing run keeps its plans.json) "
        "instead of drawing one per run",
    )
    run.add_argument("--seed", type=int, default=None, help="derandomize the search")
    run.add_argument("--canary", default="", help="comma-separated canary names")
    run.add_argument("--profile", default="", help=f"canary profile: {', '.join(PROFILES)}")
    run.add_argument(
        "--reports",
        default="reports",
        help="where replay files (failures/) and per-run reports (runs/<UTC timestamp>/) go",
    )
    run.add_argument(
        "--run-dir",
        default="",
        help="sim: write this run's summary.md and results.json here instead of "
        "<reports>/runs/<UTC timestamp>/",
    )
    run.set_defaults(handler=_run)

    replay = commands.add_parser(
        "replay",
        help="re-run a replay file without Hypothesis and print its anomalies",
        description="examples:\n  streamcheck replay reports/failures/run.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file")
    replay.set_defaults(handler=_replay)

    canaries = commands.add_parser(
        "canaries",
        help="measure how fast the simulation finds each historical bug",
        description=(
            "Run the state machine against every canary and the correct implementation; "
            "write reports/canaries.md and .json.\n\n"
            "exit codes: 0 every canary found and the control clean, 1 otherwise\n\n"
            "examples:\n  streamcheck canaries\n  streamcheck canaries --examples 1000 --seed 0\n"
            "  streamcheck canaries --workers 2           # two campaigns at a time"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    canaries.add_argument("--examples", type=int, default=500)
    canaries.add_argument("--seed", type=int, default=None)
    canaries.add_argument("--reports", default="reports")
    canaries.add_argument(
        "--only", default="", metavar="NAMES", help="comma-separated canaries (default all)"
    )
    canaries.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N campaigns at once, each in its own process (one per core at most)",
    )
    canaries.set_defaults(handler=_canaries)

    bench = commands.add_parser(
        "bench",
        help="measure emit cost, latency, simulation speed, memory and throughput",
        description=(
            "Run the benchmarks, print each figure with its baseline, ratio and goal (met\n"
            "or not), and write <reports>/bench-<UTC timestamp>.json. Benchmarks:\n"
            "emit-cost, latency, sim-speed, idle-memory, throughput. If Redis is\n"
            "unreachable, the Redis benchmarks are reported as skipped and the others run.\n\n"
            "exit codes: 0 the benchmarks ran (whether or not goals were met), 2 usage or\n"
            "environment error (or a benchmark could not finish)\n\n"
            "examples:\n  streamcheck bench\n  streamcheck bench --quick\n"
            "  streamcheck bench --only emit-cost,throughput --redis-url redis://127.0.0.1:6380"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, too small to judge goals"
    )
    bench.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    bench.add_argument("--only", default="", help="comma-separated benchmark names (default all)")
    bench.add_argument("--reports", default="reports", help="where the JSON report goes")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    args.argv = arguments
    code: int = args.handler(args)
    return code


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
