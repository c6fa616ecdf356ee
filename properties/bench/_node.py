"""The Node comparator: LibreChat's stack measured against the same Redis in the same run.

``properties/bench/node/`` holds a small Node program of this project's own
(``comparator.mjs``, shipped as package data with its ``package.json`` and locked
``package-lock.json``) that runs, on Node and ioredis, the throughput benchmark's shape
(N concurrent loops of awaited sends, one publisher and one subscriber connection,
events received per second) along two paths:

* ``raw``: an awaited PUBLISH of the envelope, no seq, no log (the transport floor);
* ``librechat``: LibreChat's per-event work on its hot path: one EVAL of INCR + EXPIRE +
  PUBLISH, then an XADD of the chunk to the stream's log.

ioredis is installed with ``npm ci`` on first use into a cache folder
(``$XDG_CACHE_HOME/streamcheck/bench-node/<lock hash>``, default ``~/.cache``), so the
comparator runs from an installed wheel as well as from a checkout. Without ``node`` or
``npm`` on ``PATH``, or when the install fails, the comparator is reported unavailable
with the reason and the benchmarks fall back to their own client's raw PUBLISH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import trio

#: The files of the Node program, in ``streamcheck.properties.bench``'s ``node/`` folder.
NODE_FILES = ("package.json", "package-lock.json", "comparator.mjs")
#: ``npm ci`` of one small package from the npm cache or the registry.
INSTALL_TIMEOUT_S = 180.0
#: Two paths x a few repetitions of 16 x 500 events take a few seconds.
RUN_TIMEOUT_S = 300.0
#: Keys the comparator writes expire after this long even if the clean-up never runs.
KEY_TTL_S = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLine:
    """One path of the comparator: the median events/s over its repetitions, and the
    events delivered of those expected over all of them."""

    path: str
    events_per_s: float
    delivered: int
    expected: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeComparison:
    node_version: str
    raw: NodeLine
    librechat: NodeLine


class NodeUnavailable(Exception):
    """The comparator could not run here; the message says why, in one line."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamcheck" / "bench-node"


def _program_text() -> dict[str, bytes]:
    folder = resources.files("streamcheck.properties.bench").joinpath("node")
    return {name: folder.joinpath(name).read_bytes() for name in NODE_FILES}


def prepare(root: Path | None = None) -> Path:
    """The folder holding the comparator with ioredis installed, installing it on first
    use (into a temporary folder renamed into place, so a failed or concurrent install
    never leaves a half-installed cache). Raises :class:`NodeUnavailable`."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailable("node or npm is not on PATH")
    files = _program_text()
    digest = hashlib.sha256(files["package.json"] + files["package-lock.json"]).hexdigest()[:16]
    root = root if root is not None else cache_root()
    target = root / digest
    if not (target / "node_modules" / "ioredis").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=root))
        try:
            for name in ("package.json", "package-lock.json"):
                (staging / name).write_bytes(files[name])
            try:
                subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=staging,
                    check=True,
                    capture_output=True,
                    timeout=INSTALL_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise NodeUnavailable(f"npm ci took over {INSTALL_TIMEOUT_S:.0f} s") from exc
            except subprocess.CalledProcessError as exc:
                tail = " ".join(exc.stderr.decode(errors="replace").split())[-300:]
                raise NodeUnavailable(f"npm ci failed (exit {exc.returncode}): {tail}") from exc
            try:
                staging.rename(target)
            except OSError:
                if not (target / "node_modules" / "ioredis").is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    (target / "comparator.mjs").write_bytes(files["comparator.mjs"])
    return target


async def compare(
    *,
    url: str,
    prefix: str,
    token: str,
    envelope: str,
    streams: int,
    events: int,
    repetitions: int,
    folder: Path,
) -> NodeComparison:
    """Run both paths; raises :class:`NodeUnavailable` if the program fails. Every key
    it writes starts with ``prefix`` (the caller deletes them) and has a TTL."""
    options = {
        "url": url,
        "prefix": prefix,
        "token": token,
        "envelope": envelope,
        "streams": streams,
        "events": events,
        "repetitions": repetitions,
        "ttl": KEY_TTL_S,
    }
    with trio.move_on_after(RUN_TIMEOUT_S) as scope:
        version = await trio.run_process(["node", "--version"], capture_stdout=True, check=False)
        process = await trio.run_process(
            ["node", str(folder / "comparator.mjs"), json.dumps(options)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if scope.cancelled_caught:
        raise NodeUnavailable(f"the Node comparator took over {RUN_TIMEOUT_S:.0f} s")
    if process.returncode != 0:
        tail = " ".join(process.stderr.decode(errors="replace").split())[-300:]
        raise NodeUnavailable(f"the Node comparator failed (exit {process.returncode}): {tail}")
    lines: dict[str, NodeLine] = {}
    for raw_line in process.stdout.decode().splitlines():
        try:
            record = json.loads(raw_line)
            lines[record["path"]] = NodeLine(
                path=str(record["path"]),
                events_per_s=float(record["events_per_s"]),
                delivered=int(record["delivered"]),
                expected=int(record["expected"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeUnavailable(f"the Node comparator printed {raw_line[:200]!r}") from exc
    if set(lines) != {"raw", "librechat"}:
        raise NodeUnavailable(f"the Node comparator printed paths {sorted(lines)}")
    return NodeComparison(
        node_version=version.stdout.decode().strip(),
        raw=lines["raw"],
        librechat=lines["librechat"],
    )


def median_of(runs: list[NodeComparison]) -> NodeComparison:
    """Several repetitions as one: each path's median events/s, and the events it
    delivered and expected summed over all of them."""
    if not runs:
        raise ValueError("no Node comparator runs to combine")

    def combine(lines: list[NodeLine]) -> NodeLine:
        return NodeLine(
            path=lines[0].path,
            events_per_s=statistics.median(line.events_per_s for line in lines),
            delivered=sum(line.delivered for line in lines),
            expected=sum(line.expected for line in lines),
        )

    return NodeComparison(
        node_version=runs[0].node_version,
        raw=combine([run.raw for run in runs]),
        librechat=combine([run.librechat for run in runs]),
    )
