"""The test a mutant of impl/ must survive: one state-machine campaign, nothing else.

``streamcheck mutants`` runs ``python -P -m streamcheck.properties._mutant_probe`` once
per mutant, in a copy of the package whose impl/ carries the mutation. Exit 0: the
campaign found no anomaly, did not crash, and reached every required rare path (as CI
requires of the correct implementation), so the mutant survived. Exit 1: the campaign
told the mutant apart (the mutant is killed). No shrinking: the verdict is all that
counts, and a shrink would only spend the mutant's time budget.
"""

from __future__ import annotations

import argparse
import sys

from streamcheck.properties._campaign import run_campaign
from streamcheck.properties._run_limits import SimBackend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamcheck.properties._mutant_probe")
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--backend",
        choices=[b.value for b in SimBackend],
        default=SimBackend.REDIS.value,
        help="what the replicas share: the mutated module's backend",
    )
    args = parser.parse_args(argv)
    result = run_campaign(
        examples=args.examples, seed=args.seed, shrink=False, backend=SimBackend(args.backend)
    )
    if result.crashed:
        print(f"crashed: {result.crashed}")
        return 1
    if result.found:
        print(f"anomaly: {', '.join(k.value for k in result.anomaly_kinds)}")
        return 1
    if result.unreached_labels:
        print(f"never reached: {', '.join(result.unreached_labels)}")
        return 1
    print(f"survived {result.examples} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
