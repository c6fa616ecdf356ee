"""The streamcheck pytest plugin: run the simulation's properties from any test suite.

Installed with the package as the pytest entry point ``streamcheck``
(``[project.entry-points.pytest11]`` in pyproject.toml), so every pytest run in an
environment where streamcheck is installed has it; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``
set, load it with ``-p streamcheck``. Do not also list it in a conftest's
``pytest_plugins``: pytest would register the module twice and stop. Usage and a CI
snippet: ``docs/pytest-plugin.md``.

It provides

* options ``--streamcheck-profile {ci,nightly}``, ``--streamcheck-db PATH``,
  ``--streamcheck-reports DIR`` and ``--streamcheck-seed N`` (each also an ini
  setting, ``streamcheck_profile`` and so on; the command line wins);
* the Hypothesis settings profiles ``streamcheck-ci`` (:data:`CI_EXAMPLES` examples,
  derandomized, no example database) and ``streamcheck-nightly``
  (:data:`NIGHTLY_EXAMPLES` examples, a fresh random seed each run, the example database
  at ``--streamcheck-db``, so a failure found one night is replayed first the next),
  registered once a collected test uses the fixture;
* the marker ``@pytest.mark.streamcheck(canaries=..., backend="sim")``: the fixture's
  defaults for that test (canaries: a comma-separated string or an iterable of names;
  backend: ``"sim"``, the simulated Redis, or ``"memory"``, impl/'s memory backend);
* the fixture ``streamcheck_campaign``: a callable that runs the state machine with the
  selected profile and returns the :class:`~streamcheck.properties._campaign.CampaignResult`. When
  an example fails it writes the replay file, ``timeline.html``, ``summary.md`` and
  ``results.json`` to ``<reports>/<test id>/`` and fails the test with the anomalies
  and the ``streamcheck replay`` command (``expect_anomaly=True`` turns that around
  for canary tests; ``check=False`` only returns the result).

* the option ``--streamcheck-impl CMD`` and the fixture ``streamcheck_real_redis``: the
  real-Redis tier's workload and faults against that implementation's agents (see
  :mod:`streamcheck.properties._pytest_real`).

The module imports nothing heavy at start-up (stdlib and pytest only): the harness,
Hypothesis and impl/ load when a test first uses the fixture, so an installed plugin
costs suites that never use it nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamcheck.properties._pytest_real import streamcheck_real_redis

if TYPE_CHECKING:
    from hypothesis import settings as HypothesisSettings

    from streamcheck.properties._campaign import CampaignResult
    from streamcheck.properties.canaries import Canary

PROFILES = ("ci", "nightly")
#: The Hypothesis profile names (prefixed, so a suite's own ``ci`` profile is untouched).
HYPOTHESIS_PROFILE = {"ci": "streamcheck-ci", "nightly": "streamcheck-nightly"}
CI_EXAMPLES = 300
NIGHTLY_EXAMPLES = 5_000
DEFAULT_PROFILE = "ci"
DEFAULT_DB = ".hypothesis/streamcheck"
DEFAULT_REPORTS = "reports/streamcheck"
#: What the simulated replicas may share (``streamcheck run --backend sim|memory``).
BACKENDS = ("sim", "memory")
FIXTURE = "streamcheck_campaign"
MARKER = "streamcheck"

_OPTIONS: tuple[tuple[str, str], ...] = (
    (
        "profile",
        f"streamcheck: Hypothesis profile for the state machine, {' or '.join(PROFILES)} "
        f"(default {DEFAULT_PROFILE}: {CI_EXAMPLES} examples, derandomized; nightly: "
        f"{NIGHTLY_EXAMPLES:,} examples, random seed, example database)",
    ),
    (
        "db",
        f"streamcheck: example database directory for the nightly profile (default "
        f"{DEFAULT_DB} under the rootdir; 'none' for no database; ci never uses one)",
    ),
    (
        "reports",
        f"streamcheck: where a failing run's replay file, timeline.html, summary.md and "
        f"results.json go, one directory per test (default {DEFAULT_REPORTS} under the "
        f"rootdir)",
    ),
    ("seed", "streamcheck: seed the search (repeats a nightly run; overrides the profile)"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("streamcheck", "streamcheck (resumable-stream properties)")
    for name, help_text in _OPTIONS:
        group.addoption(
            f"--streamcheck-{name}",
            dest=f"streamcheck_{name}",
            default=None,
            metavar=name.upper() if name != "reports" else "DIR",
            choices=PROFILES if name == "profile" else None,
            help=help_text,
        )
        parser.addini(f"streamcheck_{name}", help_text, default=None)
    group.addoption(
        "--streamcheck-impl",
        dest="streamcheck_impl",
        action="append",
        metavar="CMD",
        help="streamcheck: the implementation the streamcheck_real_redis fixture judges, as "
        "the command that starts one replica agent (docs/port-protocol.md); 'python' (the "
        "default) is streamcheck's own; given several times, replicas alternate",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(canaries=..., backend='sim'): defaults for the {FIXTURE} fixture: "
        "the canaries (historical bugs) to switch on and the backend ('sim' or 'memory')",
    )
    config.stash[_STATE] = _State(options=_read_options(config))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(FIXTURE in getattr(item, "fixturenames", ()) for item in items):
        register_profiles(config.stash[_STATE].options)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(_STATE, None)
    if state is None or config.option.verbose < 1:
        return None
    options = state.options
    return f"streamcheck: profile {options.profile}, reports {options.reports}" + (
        f", database {options.db}" if options.profile == "nightly" else ""
    )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.written:
        return
    terminalreporter.section("streamcheck")
    for nodeid, folder in state.written:
        terminalreporter.write_line(f"{nodeid}: {folder}")
        if (folder / "run.json").exists():
            terminalreporter.write_line(f"    streamcheck replay {folder / 'run.json'}")


# -- options -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    profile: str
    #: The nightly profile's example database directory (None: no database).
    db: Path | None
    reports: Path
    seed: int | None


def _read_options(config: pytest.Config) -> Options:
    def value(name: str) -> str | None:
        given = config.getoption(f"streamcheck_{name}")
        if given is None:
            given = config.getini(f"streamcheck_{name}")
        return str(given).strip() if given not in (None, "") else None

    root = config.rootpath
    profile = value("profile") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise pytest.UsageError(
            f"streamcheck_profile = {profile!r}: expected one of {', '.join(PROFILES)}"
        )
    db_text = value("db")
    db: Path | None
    if db_text is not None and db_text.lower() == "none":
        db = None
    else:
        db = root / (db_text or DEFAULT_DB)
    seed_text = value("seed")
    try:
        seed = int(seed_text) if seed_text is not None else None
    except ValueError:
        raise pytest.UsageError(f"--streamcheck-seed {seed_text!r}: expected an integer") from None
    return Options(
        profile=profile,
        db=db if profile == "nightly" else None,
        reports=root / (value("reports") or DEFAULT_REPORTS),
        seed=seed,
    )


def register_profiles(options: Options) -> None:
    """Register ``streamcheck-ci`` and ``streamcheck-nightly`` (idempotent)."""
    from hypothesis import settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    from streamcheck.properties._campaign import campaign_settings

    settings.register_profile(
        HYPOTHESIS_PROFILE["ci"],
        settings(campaign_settings(CI_EXAMPLES), derandomize=True, database=None),
    )
    database = None if options.db is None else DirectoryBasedExampleDatabase(options.db)
    settings.register_profile(
        HYPOTHESIS_PROFILE["nightly"],
        settings(campaign_settings(NIGHTLY_EXAMPLES), derandomize=False, database=database),
    )


# -- the fixture ---------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    options: Options
    #: (test id, directory) of every failure written this session, for the summary.
    written: list[tuple[str, Path]] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()


def _canaries_from(value: object) -> frozenset[Canary]:
    from streamcheck.properties.canaries import Canary, parse_canaries

    if value is None:
        return frozenset()
    if isinstance(value, str):
        return parse_canaries(value)
    if isinstance(value, Iterable):
        chosen: set[Canary] = set()
        for item in value:
            chosen |= {item} if isinstance(item, Canary) else parse_canaries(str(item))
        return frozenset(chosen)
    raise TypeError(f"canaries: expected a comma-separated string or names, got {value!r}")


def _slug(nodeid: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_.")
    return slug[-120:] or "streamcheck"


class StreamcheckCampaign:
    """What the ``streamcheck_campaign`` fixture returns (call it; see ``__call__``)."""

    def __init__(self, request: pytest.FixtureRequest, state: _State) -> None:
        self._request = request
        self._state = state
        self._calls = 0
        marker = request.node.get_closest_marker(MARKER)
        kwargs = dict(marker.kwargs) if marker is not None else {}
        unknown = set(kwargs) - {"canaries", "backend"}
        if unknown or (marker is not None and marker.args):
            pytest.fail(
                f"@pytest.mark.{MARKER} takes canaries= and backend= only, got "
                f"{sorted(unknown) or list(marker.args if marker else ())}",
                pytrace=False,
            )
        self.marker_canaries: object = kwargs.get("canaries")
        self.backend: str = str(kwargs.get("backend", "sim"))

    @property
    def profile(self) -> str:
        return self._state.options.profile

    def settings(
        self, examples: int | None = None, *, shrink: bool | None = None
    ) -> HypothesisSettings:
        """The selected profile's settings; ``examples`` overrides its budget and
        ``shrink`` (when not None) switches its shrink phase on or off."""
        from hypothesis import Phase, settings

        register_profiles(self._state.options)
        chosen = settings.get_profile(HYPOTHESIS_PROFILE[self.profile])
        if examples is not None:
            chosen = settings(chosen, max_examples=examples)
        if shrink is not None:
            phases = [p for p in chosen.phases if p is not Phase.shrink]
            chosen = settings(chosen, phases=[*phases, Phase.shrink] if shrink else phases)
        return chosen

    def __call__(
        self,
        canaries: object = None,
        *,
        examples: int | None = None,
        seed: int | None = None,
        shrink: bool | None = None,
        expect_anomaly: bool = False,
        require_labels: Iterable[str] = (),
        check: bool = True,
    ) -> CampaignResult:
        """Run the state machine with the selected profile and return the result.

        ``canaries`` (default: the marker's, else none) switches historical bugs on;
        ``examples`` overrides the profile's budget, ``shrink`` its shrink phase;
        ``seed`` (default ``--streamcheck-seed``) overrides its randomness. With
        ``check`` (the default) the test fails when an anomaly is found (or, with
        ``expect_anomaly=True``, when none is), when a coverage label of
        ``require_labels`` was never reached, and always when the harness or impl/
        crashed. Failing runs leave their files in ``<reports>/<test id>/``.
        """
        __tracebackhide__ = True
        from streamcheck.properties._campaign import CampaignSpec, required_labels
        from streamcheck.properties._run_limits import SimBackend
        from streamcheck.properties._run_report import ReportSpec, run_and_report

        if self.backend not in BACKENDS:
            pytest.fail(
                f"@pytest.mark.{MARKER}(backend={self.backend!r}): the plugin runs the "
                f"simulation only (backend='sim' or 'memory'); for real Redis use "
                f"`streamcheck run --backend {self.backend}`",
                pytrace=False,
            )
        try:
            chosen_canaries = _canaries_from(
                canaries if canaries is not None else self.marker_canaries
            )
        except (TypeError, ValueError) as exc:
            pytest.fail(f"streamcheck: {exc}", pytrace=False)
        chosen = self.settings(examples, shrink=shrink)
        option_seed = seed is None and self._state.options.seed is not None
        seed = seed if seed is not None else self._state.options.seed
        self._calls += 1
        slug = _slug(self._request.node.nodeid)
        folder = self._state.options.reports / (
            slug if self._calls == 1 else f"{slug}-{self._calls}"
        )
        replay = folder / "run.json"
        replay.unlink(missing_ok=True)
        backend = SimBackend(self.backend)
        spec = CampaignSpec(
            canaries=chosen_canaries,
            seed=seed,
            replay_file=replay,
            hypothesis_settings=chosen,
            backend=backend,
            required_labels=required_labels(backend),
        )
        reporting = ReportSpec(
            command=self._command(f"--streamcheck-seed {seed}" if option_seed else ""),
            run_dir=lambda _started: folder,
            backend=self.backend,
            clean_runs=False,  # only a failure leaves files
        )
        reported = run_and_report(spec, reporting)
        result = reported.result
        if reported.run_dir is not None:
            self._state.written.append((self._request.node.nodeid, reported.run_dir))
            if result.replay_file is not None:
                self._request.node.user_properties.append(
                    ("streamcheck_replay", str(result.replay_file))
                )
        if check:
            message = self._verdict(
                result,
                folder,
                expect_anomaly=expect_anomaly,
                require_labels=require_labels,
                drawn_seed=result.seed if seed is None else None,
            )
            if message is not None:
                pytest.fail(message, pytrace=False)
        return result

    def _command(self, extra: str = "") -> str:
        """A pytest command line that runs this test again with this profile."""
        line = f"pytest {self._request.node.nodeid} --streamcheck-profile {self.profile}"
        return f"{line} {extra}" if extra else line

    def _verdict(
        self,
        result: CampaignResult,
        folder: Path,
        *,
        expect_anomaly: bool,
        require_labels: Iterable[str],
        drawn_seed: int | None = None,
    ) -> str | None:
        what = (
            f"profile {self.profile}, canaries: "
            f"{', '.join(sorted(c.value for c in result.canaries)) or 'none'}, "
            f"{result.examples} examples in {result.seconds:.1f} s"
            + (f", seed {result.seed}" if result.seed is not None else ", derandomized")
        )
        if result.crashed:
            return f"streamcheck: the run crashed ({what}):\n{result.crashed}\n{_files(folder)}"
        if result.found and not expect_anomaly:
            summary = result.report.summary() if result.report is not None else ""
            again = ""
            if drawn_seed is not None:
                # Hypothesis drew the seed (nightly): this command repeats the same search.
                again = f"\nsearch again: {self._command(f'--streamcheck-seed {drawn_seed}')}"
            return (
                f"streamcheck found an anomaly ({what}): first failing example "
                f"#{result.first_failure_example}, {result.shrink_summary()}\n"
                f"{summary}\n{_files(folder)}{again}"
            )
        if expect_anomaly and not result.found:
            return f"streamcheck: expected an anomaly, none found ({what})"
        missing = sorted(set(require_labels) - set(result.labels))
        if missing and not result.found:
            reached = ", ".join(f"{k} ({n})" for k, n in sorted(result.labels.items()))
            return (
                f"streamcheck: rare paths never reached ({what}): {', '.join(missing)}; "
                f"reached: {reached or 'none'}"
            )
        return None


def _files(folder: Path) -> str:
    """The files a failure wrote, one line each (those that exist)."""
    lines = []
    for label, name, template in (
        ("replay", "run.json", "streamcheck replay {}"),
        ("timeline", "timeline.html", "{}  (open it in a browser)"),
        ("summary", "summary.md", "{}"),
    ):
        path = folder / name
        if path.exists():
            lines.append(f"{label + ':':<10}{template.format(path)}")
    return "\n".join(lines)


@pytest.fixture
def streamcheck_campaign(request: pytest.FixtureRequest) -> StreamcheckCampaign:
    """Run the streamcheck state machine with the selected profile: call it
    (``streamcheck_campaign()``, or with ``canaries=``, ``examples=``, ``seed=``,
    ``expect_anomaly=``, ``check=``) to get the CampaignResult; a failing run writes
    its replay file and timeline.html and fails the test."""
    return StreamcheckCampaign(request, request.config.stash[_STATE])


__all__ = ["streamcheck_campaign", "streamcheck_real_redis"]
