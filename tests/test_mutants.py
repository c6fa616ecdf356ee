"""The mutation score's CI sample: a few of impl/'s mutants against the campaign.

`make test` runs it (marker ``mutation``; deselect with ``-m "not mutation"``); the
full sample is the nightly command in docs/mutation.md.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from streamcheck.properties._impl_coverage import IMPL_DIR
from streamcheck.properties._mutants import (
    VERDICTS,
    MutantsError,
    mutant_timeout,
    render,
    run_mutants,
    to_json,
)
from streamcheck.properties._run_limits import SimBackend

#: Small enough for CI (about 2 minutes on 2 cores): the copy, Cosmic Ray's enumeration,
#: one unmutated campaign and then mutants until the budget is spent. The sample is
#: drawn from one small module, so that it moves only when that module changes (a
#: sample of all impl/ moved with every change elsewhere and then killed nothing in
#: the budget); its seed puts a killable mutant first (checked 2026-12-05: of 6,
#: line 23 killed first, and line 44 killed too). Recheck when _verdict.py changes.
CI_SAMPLE, CI_BUDGET, CI_SAMPLE_SEED = 6, 120.0, 0
CI_MODULES = ("transport/_verdict.py",)


def _impl_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(IMPL_DIR.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.mutation
def test_a_small_mutation_sample_runs_in_a_copy_and_reports_every_survivor() -> None:
    before = _impl_digest()
    run = run_mutants(
        sample=CI_SAMPLE,
        sample_seed=CI_SAMPLE_SEED,
        budget=CI_BUDGET,
        include=CI_MODULES,
    )
    assert _impl_digest() == before, "the working tree's impl/ was mutated"
    assert len(run.mutants) == CI_SAMPLE and run.population > CI_SAMPLE
    judged = [m for m in run.mutants if m.verdict != "not run"]
    assert judged, "no mutant ran within the budget"
    assert all(m.verdict in VERDICTS and m.verdict != "incompetent" for m in judged)
    assert all(m.diff for m in judged), "a mutant ran without a mutation"
    counts = run.counts()
    assert counts["killed"] + counts["timeout"] >= 1, (
        "nothing was killed: does the campaign still import the mutated copy?"
    )
    report = render(run, command="pytest", date="today")
    for m in run.mutants:
        if m.verdict == "survived":
            assert f"`{m.module}:{m.line}`" in report
    document = json.loads(json.dumps(to_json(run, command="pytest", date="today")))
    totals = sum(sum(v[k] for k in VERDICTS) for v in document["by_module"].values())
    assert totals == CI_SAMPLE


def test_a_sample_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_mutants(sample=0)


def test_a_timeout_shorter_than_the_unmutated_campaign_is_refused() -> None:
    # Every mutant would time out and count as killed: a score made of the machine's load.
    with pytest.raises(MutantsError, match="too short: the unmutated campaign took 90 s"):
        mutant_timeout(40.0, 90.0, SimBackend.REDIS)
    assert mutant_timeout(140.0, 90.0, SimBackend.REDIS) == 140.0
    assert mutant_timeout(None, 90.0, SimBackend.REDIS) == 280.0
