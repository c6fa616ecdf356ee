"""The pytest plugin's real-Redis fixture: judge an implementation, ours or any other.

``streamcheck_real_redis()`` runs the real-Redis tier's workload under the chosen fault
kinds against agents started with ``--streamcheck-impl CMD`` (streamcheck's own agent when
the option is not given) and fails the test with the anomalies and where each failing
run's evidence was kept. Like the plugin, this module imports only stdlib and pytest at
start-up; the harness loads when a test calls the fixture.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from streamcheck.properties.realredis._harness import FaultFigures

#: The option's default: streamcheck's own implementation.
OWN_IMPLEMENTATION = "python"


class StreamcheckRealRedis:
    """What the ``streamcheck_real_redis`` fixture returns (call it)."""

    def __init__(self, request: pytest.FixtureRequest, impls: Sequence[str]) -> None:
        self._request = request
        self.impls = list(impls) or [OWN_IMPLEMENTATION]

    def __call__(
        self,
        *,
        backend: str = "redis",
        faults: Iterable[str] | None = None,
        runs: int = 1,
        soak: bool = False,
        seed: int = 1,
        check: bool = True,
    ) -> list[FaultFigures]:
        """Every fault kind of ``backend`` (or ``faults``), ``runs`` runs each; fails the
        test on an anomaly or a failing agent unless ``check=False``. Skips the test when
        redis-server is not on PATH."""
        import trio

        from streamcheck.properties.protocol import AgentFailed, agent_command
        from streamcheck.properties.realredis._harness import (
            PROFILES,
            Backend,
            FaultKind,
            probe_faults,
            run_tier,
        )
        from streamcheck.properties.realredis._report import table

        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not on PATH: the real-Redis tier needs Redis installed")
        chosen = Backend(backend)
        commands = [agent_command(impl) for impl in self.impls]
        # Which faults apply depends on where the implementation keeps its streams.
        try:
            applicable, own_server = probe_faults(chosen, commands)
        except AgentFailed as exc:
            pytest.fail(f"streamcheck could not start {' | '.join(self.impls)}: {exc}")
        kinds = tuple(FaultKind(f) for f in faults) if faults is not None else applicable
        unsupported = [k.value for k in kinds if k not in applicable]
        if unsupported:
            where = "an implementation with its own server" if own_server else "it"
            pytest.fail(
                f"{', '.join(unsupported)} cannot run on backend {chosen.value} for {where}; "
                f"these can: {', '.join(k.value for k in applicable) or 'none'}",
                pytrace=False,
            )
        reports = (
            self._request.config.rootpath
            / "reports"
            / "streamcheck-real"
            / _slug(self._request.node.nodeid)
        )
        figures = trio.run(
            lambda: run_tier(
                chosen,
                PROFILES["soak" if soak else "short"],
                seed=seed,
                runs_per_fault=runs,
                faults=kinds,
                keep_failures=reports,
                commands=commands,
            )
        )
        failing = [f for f in figures if f.anomalies or f.agent_failures]
        if check and failing:
            details = "\n".join(
                f"{f.fault.value}: seeds {f.failing_seeds}; agents: {'; '.join(f.agent_failures)}"
                if f.agent_failures
                else f"{f.fault.value}: seeds {f.failing_seeds}"
                for f in failing
            )
            implementation = next((f.implementation for f in figures if f.implementation), "?")
            pytest.fail(
                f"streamcheck found anomalies in {implementation} ({' | '.join(self.impls)}):\n"
                f"{table(figures)}\n{details}\nevidence kept under {reports}",
                pytrace=False,
            )
        return figures


def _slug(nodeid: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_.")
    return slug[-120:] or "streamcheck"


@pytest.fixture
def streamcheck_real_redis(request: pytest.FixtureRequest) -> StreamcheckRealRedis:
    """Run the real-Redis tier against ``--streamcheck-impl`` (default: streamcheck's own
    agent): call it (``streamcheck_real_redis()``, or with ``backend=``, ``faults=``,
    ``runs=``, ``soak=``, ``seed=``, ``check=``) to get the figures per fault kind."""
    given = request.config.getoption("streamcheck_impl") or []
    return StreamcheckRealRedis(request, given)
