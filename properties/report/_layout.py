"""The timeline's layout: a pure function from a replay file's JSON to lanes and rows.

No HTML here (that is :mod:`._timeline`'s job): :func:`layout_timeline` decides what is
drawn where and says it in words, so the page's content is tested apart from its markup.
Its parts: :mod:`._shapes` (what a layout is made of), :mod:`._history_rows` (lanes and
history records), :mod:`._redis_rows` (Redis's steps and the mechanism),
:mod:`._header` (the verdict and what ran), :mod:`._words` (reading untrusted values).

* **Lanes**: every client session (by first appearance), every replica of the run
  (``r0`` .. ``r<replicas-1>``, plus any other the history names), and Redis.
* **Rows**, in the order things happened: one per history record, and one per step of
  the simulated Redis that shows the mechanism (``redis_records``, typed records from
  :mod:`streamcheck.properties.sim._trace`): a SUBSCRIBE running and its
  acknowledgement arriving, a publish and the replicas it reached, a log read and the
  seqs it returned (a replica's first read after a session attached there is that
  session's catch-up, later ones repairs), a message dropped, a connection cut, a
  failover. Each Redis record carries ``position``, the number of
  history records that existed when Redis made the step, so it is drawn exactly there
  (records without one, from hand-made files, go by simulated time).
* An emit's row says which replicas the publish reached (its :class:`Publication
  <streamcheck.properties.sim.Publication>`'s receivers).
* **The first anomaly**, with a short account of its mechanism where the records show
  one (:mod:`._redis_rows`): for a seq a session never got, whether the publish reached
  its replica, whether its SUBSCRIBE ran after the publish, whether Redis dropped the
  message, and whether the replica read the log afterwards.

The input is never trusted: a missing or odd field gives a "?" or a generic row, never
an exception, because the page is most needed when something is odd.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamcheck.properties.report._header import (
    _anomalies,
    _decision_words,
    _ran,
    _statistics_words,
    _verdict,
)
from streamcheck.properties.report._history_rows import _collect_lanes, _draw
from streamcheck.properties.report._redis_rows import (
    _attached,
    _mechanism,
    _parse_records,
    _place,
    _publications,
    _redis_steps,
)
from streamcheck.properties.report._shapes import (
    Anomaly,
    Arrow,
    Mark,
    Row,
    TimelineLayout,
)
from streamcheck.properties.report._words import (
    _dicts,
    _float_or_none,
    _int_or_none,
    _plural,
    _text,
)

__all__ = ["layout_timeline"]


def layout_timeline(replay: Mapping[str, Any]) -> TimelineLayout:
    """The replay file's JSON (as ``json.loads`` returns it) laid out: pure and
    deterministic, the same input gives an equal layout."""
    history = _dicts(replay.get("history"))
    report = replay.get("report")
    report = report if isinstance(report, Mapping) else {}
    anomalies = _anomalies(report)
    first = anomalies[0] if anomalies else None
    records, unreadable = _parse_records(replay.get("redis_records"))
    lanes, sessions, generation_replica = _collect_lanes(
        history, [r for _n, r in records], _int_or_none(replay.get("replicas"))
    )
    lane_keys = {lane.key for lane in lanes}
    publications = _publications(records)

    # Row ids: the first anomaly's record gets the fixed id a reader (or a test) jumps to.
    history_row: dict[int, str] = {}
    for position, record in enumerate(history):
        index = _int_or_none(record.get("index"))
        index = position if index is None else index
        history_row[index] = (
            "first-anomaly" if first is not None and first.first_bad == index else f"rec-{index}"
        )
    steps = [
        s for s in _redis_steps(records, _attached(sessions)) if _lanes_known(s.figure, lane_keys)
    ]
    record_row = {step.number: f"redis-{step.number}" for step in steps}
    placed = _place(steps, history)

    bad_at: dict[int, list[Anomaly]] = {}
    good_at: dict[int, list[Anomaly]] = {}
    for anomaly in anomalies:
        if anomaly.first_bad is not None:
            bad_at.setdefault(anomaly.first_bad, []).append(anomaly)
        if anomaly.last_good is not None:
            good_at.setdefault(anomaly.last_good, []).append(anomaly)

    rows: list[Row] = []
    step_at = 0

    def redis_rows_before(position: int) -> None:
        nonlocal step_at
        while step_at < len(steps) and placed[step_at] <= position:
            step = steps[step_at]
            step_at += 1
            rows.append(
                Row(
                    kind="redis",
                    row_id=record_row[step.number],
                    time=step.record.time,
                    figure=step.figure,
                    words=step.words,
                    index=step.number,
                    classes=("redis-row", f"redis-{step.style}"),
                    data=(("redis-record", str(step.number)),),
                )
            )

    for position, record in enumerate(history):
        redis_rows_before(position)
        index = _int_or_none(record.get("index"))
        index = position if index is None else index
        figure, words = _draw(record, sessions, generation_replica, publications)
        classes = [f"t-{_text(record.get('type'), 'unknown').lower()}"]
        notes: list[tuple[str, str]] = []
        for anomaly in bad_at.get(index, []):
            notes.append(
                (
                    "explanation",
                    f"anomaly {anomaly.number}, {anomaly.kind}: {anomaly.explanation}",
                )
            )
        for anomaly in good_at.get(index, []):
            notes.append(
                (
                    "last-good-tag",
                    f"last good record before anomaly {anomaly.number} ({anomaly.kind})",
                )
            )
        if first is not None and first.first_bad == index:
            classes.append("anomalous")
        elif index in bad_at:
            classes.append("anomalous-other")
        if index in good_at:
            classes.append("last-good")
        rows.append(
            Row(
                kind="record",
                row_id=history_row[index],
                time=_float_or_none(record.get("time")),
                figure=figure,
                words=words,
                index=index,
                classes=tuple(classes),
                notes=tuple(notes),
                data=(("index", str(index)), ("type", _text(record.get("type"), "unknown"))),
            )
        )
    redis_rows_before(len(history))

    involved: set[str] = set()
    if first is not None and first.session is not None:
        involved.add(first.session)
        replica = sessions.replica(first.session)
        if replica is not None:
            involved.add(replica)
    raw_trace = replay.get("redis_trace")
    trace_lines = tuple(r.line() for _n, r in records) or tuple(
        line for line in (raw_trace if isinstance(raw_trace, list) else []) if isinstance(line, str)
    )
    file_notes: list[str] = []
    if unreadable:
        file_notes.append(
            f"{_plural(unreadable, 'Redis record')} of this file could not be read and "
            "are not drawn."
        )
    if not records and replay.get("redis_trace"):
        file_notes.append(
            "This file has the Redis trace as text only (written before typed records): "
            "Redis's steps are listed at the end, not drawn."
        )
    statistics = report.get("statistics")
    return TimelineLayout(
        name=_text(replay.get("name"), "run"),
        lanes=tuple(lanes),
        rows=tuple(rows),
        anomalies=tuple(anomalies),
        verdict=_verdict(report, anomalies),
        mechanism=tuple(_mechanism(first, sessions, records, record_row, history_row)),
        ran=tuple(_ran(replay, len(history), len(records) or len(trace_lines))),
        statistics=_statistics_words(statistics) if isinstance(statistics, Mapping) else None,
        involved=frozenset(involved),
        row_ids=history_row,
        decisions=tuple(_decision_words(replay.get("decisions"))),
        trace_lines=trace_lines,
        missing_first=(
            first is not None and first.first_bad is not None and first.first_bad not in history_row
        ),
        notes=tuple(file_notes),
    )


def _lanes_known(figure: Arrow | Mark, lanes: set[str]) -> bool:
    if isinstance(figure, Arrow):
        return figure.source in lanes and figure.target in lanes
    return figure.lane is None or figure.lane in lanes
