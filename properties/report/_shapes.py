"""What a timeline layout is made of: lanes, arrows, marks, rows (see :mod:`._layout`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

LaneKind = Literal["session", "replica", "redis"]


@dataclass(frozen=True, slots=True)
class Lane:
    key: str  # the session or replica name, or "redis"
    kind: LaneKind
    title: str
    subtitle: str


@dataclass(frozen=True, slots=True)
class Arrow:
    source: str
    target: str
    label: str
    #: CSS class: emit, emit-failed, deliver, terminal, gap, subscribe, ack, log-read
    style: str


@dataclass(frozen=True, slots=True)
class Mark:
    lane: str | None  # None: across every lane
    label: str
    style: str


@dataclass(frozen=True, slots=True)
class Anomaly:
    number: int  # 1-based, in the report's order
    kind: str
    first_bad: int | None
    last_good: int | None
    session: str | None
    stream: str | None
    generation: str | None
    seq: int | None
    explanation: str


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the diagram: a history record, or a step of Redis."""

    kind: Literal["record", "redis"]
    #: The row's anchor (``first-anomaly``, ``rec-<index>``, ``redis-<n>``).
    row_id: str
    time: float | None
    figure: Arrow | Mark
    words: str
    #: The record's index for a record row; the redis record's place in the file for
    #: a Redis row.
    index: int
    #: ``t-<record type>`` or ``redis-<record type>``, and the highlight classes.
    classes: tuple[str, ...] = ()
    #: Sentences under the words: (CSS class, text).
    notes: tuple[tuple[str, str], ...] = ()
    #: ``data-*`` attributes.
    data: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TimelineLayout:
    name: str
    lanes: tuple[Lane, ...]
    rows: tuple[Row, ...]
    anomalies: tuple[Anomaly, ...]
    #: (CSS class, sentence): the verdict in one line.
    verdict: tuple[str, str]
    #: The first anomaly's mechanism as the records show it, one sentence each, with
    #: the row ids they refer to (sentence, row id or None).
    mechanism: tuple[tuple[str, str | None], ...]
    #: "What ran": (label, value) pairs.
    ran: tuple[tuple[str, str], ...]
    statistics: str | None
    #: The lanes of the first anomaly's session and replica.
    involved: frozenset[str]
    #: Every anomaly's ``first_bad`` that has a row, to its row id.
    row_ids: Mapping[int, str]
    decisions: tuple[str, ...]
    trace_lines: tuple[str, ...]
    missing_first: bool = False
    notes: tuple[str, ...] = field(default=())
