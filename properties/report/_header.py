"""The timeline's header in words: the verdict, what ran (the minimizer's summary
included), the anomalies, the checker's statistics, the decisions (see :mod:`._layout`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from streamcheck.properties.report._shapes import (
    Anomaly,
)
from streamcheck.properties.report._words import (
    _dicts,
    _int_or_none,
    _optional_str,
    _plural,
    _text,
)

#: Keys of the replay file the page presents in a dedicated place; any other top-level
#: key is listed generically under "what ran", so new fields show up without a change.
_KNOWN_KEYS = frozenset(
    {
        "format",
        "version",
        "name",
        "canaries",
        "replicas",
        "hypothesis_seed",
        "decisions",
        "history",
        "report",
        "redis_trace",
        "redis_records",
        "minimized",
        "rule_steps",
        "crashed",
    }
)


def _anomalies(report: Mapping[str, Any]) -> list[Anomaly]:
    found: list[Anomaly] = []
    for number, item in enumerate(_dicts(report.get("anomalies")), start=1):
        found.append(
            Anomaly(
                number=number,
                kind=_text(item.get("kind")),
                first_bad=_int_or_none(item.get("first_bad")),
                last_good=_int_or_none(item.get("last_good")),
                session=_optional_str(item.get("session")),
                stream=_optional_str(item.get("stream_id")),
                generation=_optional_str(item.get("generation")),
                seq=_int_or_none(item.get("seq")),
                explanation=_text(item.get("explanation"), ""),
            )
        )
    return found


def _minimized_words(minimized: object, decisions: int) -> str | None:
    if not isinstance(minimized, Mapping):
        return None
    before = _int_or_none(minimized.get("from_decisions"))
    replays = _int_or_none(minimized.get("replays"))
    kept = _optional_str(minimized.get("kept_anomaly"))
    words = "The minimizer cut the decision list"
    if before is not None:
        words += f" from {_plural(before, 'decision')} to {decisions}"
    if replays is not None:
        words += f" in {_plural(replays, 'replay')}"
    if kept == "crash":
        words += ", keeping the crash"
    elif kept is not None:
        words += f", keeping the first anomaly's class ({kept})"
    if minimized.get("out_of_time") is True:
        words += "; it ran out of time, so a shorter list may exist"
    return words + "."


def _ran(
    replay: Mapping[str, Any], history_length: int, redis_length: int
) -> list[tuple[str, str]]:
    canaries = replay.get("canaries")
    canary_text = (
        ", ".join(str(c) for c in canaries)
        if isinstance(canaries, list) and canaries
        else "none (the correct implementation)"
    )
    decisions = replay.get("decisions")
    decision_count = len(decisions) if isinstance(decisions, list) else 0
    rows: list[tuple[str, str]] = [
        ("run", _text(replay.get("name"), "(unnamed run)")),
        ("canaries", canary_text),
        ("replicas", _text(replay.get("replicas"))),
    ]
    if replay.get("hypothesis_seed") is not None:
        rows.append(("hypothesis seed", _text(replay.get("hypothesis_seed"))))
    size = (
        f"{_plural(decision_count, 'decision')}, {_plural(history_length, 'history record')}, "
        f"{_plural(redis_length, 'Redis step')}"
    )
    rule_steps = _int_or_none(replay.get("rule_steps"))
    if rule_steps:
        size += f"; Hypothesis's shrunk example had {_plural(rule_steps, 'rule step')}"
    rows.append(("size", size))
    minimized = _minimized_words(replay.get("minimized"), decision_count)
    if minimized is not None:
        rows.append(("minimized", minimized))
    crashed = _optional_str(replay.get("crashed"))
    if crashed is not None:
        rows.append(("crashed", f"the simulated world crashed: {crashed.strip().splitlines()[-1]}"))
    for key in sorted(k for k in replay if k not in _KNOWN_KEYS):
        rows.append((key, json.dumps(replay[key], sort_keys=True, default=str)))
    version = replay.get("version", replay.get("format"))
    if version is not None:
        rows.append(("replay format", _text(version)))
    return rows


def _verdict(report: Mapping[str, Any], anomalies: Sequence[Anomaly]) -> tuple[str, str]:
    if anomalies:
        counts: dict[str, int] = {}
        for anomaly in anomalies:
            counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        noun = "anomaly" if len(anomalies) == 1 else "anomalies"
        return "failed", f"verdict: FAILED, {len(anomalies)} {noun} ({kinds})"
    if report.get("verdict") == "unknown":
        reason = _text(report.get("unknown_reason"), "no reason given")
        return "failed", f"verdict: unknown, the history cannot be judged ({reason})"
    if report.get("ok") is False:
        return "failed", "verdict: FAILED (no anomaly recorded)"
    if not report:
        return "failed", "verdict: unknown, the file holds no report"
    return "ok", "verdict: ok, no anomaly"


def _statistics_words(s: Mapping[str, Any]) -> str:
    healed = (
        "liveness judged (the run healed)" if s.get("healed") else "liveness not judged (no heal)"
    )
    return (
        f"The checker read {_text(s.get('records'))} records: {_text(s.get('sessions'))} "
        f"sessions, {_text(s.get('generations'))} generations, "
        f"{_text(s.get('events_delivered'))} events delivered, "
        f"{_text(s.get('gaps_signalled'))} gaps signalled covering "
        f"{_text(s.get('seqs_signalled_lost'))} seqs, "
        f"{_text(s.get('synthetic_terminals'))} synthetic terminals; {healed}."
    )


def _decision_words(decisions: object) -> list[str]:
    items: list[str] = []
    if not isinstance(decisions, list):
        return items
    for decision in decisions:
        if isinstance(decision, list) and len(decision) == 2:
            name, args = decision
            inner = (
                ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(args.items()))
                if isinstance(args, Mapping)
                else json.dumps(args, default=str)
            )
            items.append(f"{name}({inner})")
        else:
            items.append(json.dumps(decision, default=str))
    return items
