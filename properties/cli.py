"""The ``streamcheck`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from impl._errors import BackendUnavailable

EXIT_OK, EXIT_ANOMALY, EXIT_USAGE = 0, 1, 2


def _demo(args: argparse.Namespace) -> int:
    from properties.demo import run_demo

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
