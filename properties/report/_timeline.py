"""``timeline.html``: one failing run drawn as a sequence diagram a person can read.

Input is the JSON of a replay file (``properties/_replay.py``: ``name``, ``canaries``,
``replicas``, ``hypothesis_seed``, ``decisions``, ``history``, ``report``,
``redis_trace``). Output is one HTML page with everything inline: no script, no
network, no external asset, so it opens from a CI artefact or a mail attachment, and
renders the same with JavaScript disabled.

Layout: columns ("lanes") for every client session (``s1``, ``s2``, ...), every replica
named in the history (``r0``, ``r1``, ...) and Redis; one row per history record, in
history order. Emits are arrows replica -> Redis, deliveries arrows replica -> session
(the session's replica comes from its ``SessionOpened``); the other records are marks
on their lane. A few Redis trace events (failover, dropped message, dropped
connection) are interleaved as marks on the Redis lane. The record named by the first
anomaly's ``first_bad`` carries ``id="first-anomaly"`` and the class ``anomalous``,
with the checker's sentence next to it; its ``last_good`` gets a lighter mark.

Generation lives inside its replica in this design (the generator's emit runs on the
replica that created the turn, and the record names that replica), so there is no
separate generator lane: it would duplicate the replica's lane and push the arrows
further apart.

The renderer is a pure function of its input (no clock, no randomness, lanes in a
fixed order), so the same replay file always yields the same bytes; and it never
trusts the input's shape, because the page is most needed when something is odd.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["TIMELINE_FILENAME", "render_timeline", "write_timeline"]

#: The conventional file name of the page, one per failure.
TIMELINE_FILENAME = "timeline.html"

#: Keys of the replay file this page presents in a dedicated place; any other top-level
#: key is listed generically under "what ran", so new fields show up without a change.
_KNOWN_KEYS = frozenset(
    {
        "format",
        "name",
        "canaries",
        "replicas",
        "hypothesis_seed",
        "decisions",
        "history",
        "report",
        "redis_trace",
    }
)

#: Fixed columns before the lanes (record index, simulated time) and after them (words).
_INDEX_COLUMN = 1
_TIME_COLUMN = 2
_FIRST_LANE_COLUMN = 3

LaneKind = Literal["session", "replica", "redis"]


def _e(value: object) -> str:
    """Escape anything for text and for double-quoted attribute values."""
    return html.escape(str(value), quote=True)


def _text(value: object, default: str = "?") -> str:
    return default if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    # bool is an int in Python; a JSON true is never a seq or an index.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _time_text(value: object) -> str:
    t = _float_or_none(value)
    return "" if t is None else f"{t:.3f}"


def _natural_key(name: str) -> tuple[str, int, str]:
    """``r2`` before ``r10``: a prefix, then the number, then the rest."""
    match = re.fullmatch(r"([^\d]*)(\d+)(.*)", name)
    if match is None:
        return (name, -1, "")
    return (match.group(1), int(match.group(2)), match.group(3))


def _dicts(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


# -- lanes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lane:
    key: str  # the session or replica name, or "redis"
    kind: LaneKind
    title: str
    subtitle: str


@dataclass(slots=True)
class _Sessions:
    """What each session's ``SessionOpened`` says (its replica, user, mode, turn)."""

    opened: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def note(self, name: str, record: Mapping[str, Any] | None) -> None:
        if name not in self.order:
            self.order.append(name)
        if record is not None and name not in self.opened:
            self.opened[name] = record

    def replica(self, name: str) -> str | None:
        record = self.opened.get(name)
        return None if record is None else _optional_str(record.get("replica"))


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _collect_lanes(
    history: Sequence[Mapping[str, Any]],
) -> tuple[list[_Lane], _Sessions, dict[str, str]]:
    """Lanes in display order: sessions (by first appearance), replicas (natural
    order), Redis. Also returns the sessions and each generation's replica."""
    sessions = _Sessions()
    replicas: set[str] = set()
    generation_replica: dict[str, str] = {}
    for record in history:
        kind = record.get("type")
        session = _optional_str(record.get("session"))
        if session is not None:
            sessions.note(session, record if kind == "SessionOpened" else None)
        replica = _optional_str(record.get("replica"))
        if replica is not None:
            replicas.add(replica)
        generation = _optional_str(record.get("generation"))
        if kind == "GenerationStarted" and generation is not None and replica is not None:
            generation_replica.setdefault(generation, replica)
    lanes: list[_Lane] = []
    for name in sessions.order:
        opened = sessions.opened.get(name)
        if opened is None:
            subtitle = "no SessionOpened record"
        else:
            subtitle = (
                f"{_text(opened.get('user_id'))}, {_text(opened.get('mode'))} "
                f"stream {_text(opened.get('stream_id'))} via {_text(opened.get('replica'))}"
            )
        lanes.append(_Lane(name, "session", f"client {name}", subtitle))
    for name in sorted(replicas, key=_natural_key):
        lanes.append(_Lane(name, "replica", f"replica {name}", "server and its generators"))
    lanes.append(_Lane("redis", "redis", "Redis", "log, counter, pub/sub"))
    return lanes, sessions, generation_replica


# -- Redis trace events ----------------------------------------------------------------

_TRACE_LINE = re.compile(
    r"^(?P<time>\d+(?:\.\d+)?)(?: #(?P<item>\d+))? (?P<verb>\S+) (?P<conn>\S+)(?: (?P<text>.*))?$"
)
_REPLY_SEQ = re.compile(r"-> \[(?P<seq>-?\d+),")
_LIST = re.compile(r"(?P<name>failed|lost) \[(?P<items>[^\]]*)\]")
_MESSAGE_FIELDS = re.compile(r'"(?P<key>type|seq|generationId)":(?P<value>"[^"]*"|-?\d+)')


@dataclass(frozen=True, slots=True)
class _RedisEvent:
    line: int  # position in redis_trace
    time: float
    label: str  # short, on the lane
    text: str  # the sentence in the notes column
    verb: str


@dataclass(frozen=True, slots=True)
class _TraceLine:
    line: int
    time: float
    verb: str
    conn: str
    text: str


def _parse_trace(trace: Sequence[object]) -> list[_TraceLine]:
    parsed: list[_TraceLine] = []
    for number, raw in enumerate(trace):
        if not isinstance(raw, str):
            continue
        match = _TRACE_LINE.match(raw)
        if match is None:
            continue
        parsed.append(
            _TraceLine(
                number,
                float(match.group("time")),
                match.group("verb"),
                match.group("conn"),
                match.group("text") or "",
            )
        )
    return parsed


def _replica_of_connection(conn: str) -> str:
    """``r0.1/s0`` (replica r0, incarnation 1, pub/sub connection 0) -> ``r0``."""
    return conn.split("/", 1)[0].split(".", 1)[0]


def _connection_words(conn: str) -> str:
    kind = conn.rsplit("/", 1)[-1][:1]
    what = {"s": "pub/sub connection", "c": "command connection"}.get(kind, "connection")
    return f"{what} {conn} of replica {_replica_of_connection(conn)}"


def _list_count(text: str, name: str) -> int:
    for match in _LIST.finditer(text):
        if match.group("name") == name:
            return len([item for item in match.group("items").split(",") if item.strip()])
    return 0


def _message_words(text: str) -> str:
    """``message <channel> {"type":"chunk","seq":0,...`` -> ``chunk seq 0 of r0.1-g2 on
    <channel>`` (the payload is cut at 120 characters, so it is not parsed as JSON)."""
    parts = text.split(" ", 2)
    channel = parts[1] if len(parts) > 1 else "?"
    fields = {m.group("key"): m.group("value").strip('"') for m in _MESSAGE_FIELDS.finditer(text)}
    if not fields:
        return text
    return (
        f"{fields.get('type', 'message')} seq {fields.get('seq', '?')} of "
        f"{fields.get('generationId', '?')} on {channel}"
    )


def _redis_events(lines: Sequence[_TraceLine]) -> list[_RedisEvent]:
    """The trace lines a reader needs (faults), in words. A failover drops every
    connection; those closes are folded into the failover's own mark."""
    events: list[_RedisEvent] = []
    i = 0
    while i < len(lines):
        entry = lines[i]
        i += 1
        if entry.verb == "failover":
            dropped: list[str] = []
            lost = 0
            while (
                i < len(lines)
                and lines[i].verb == "close"
                and lines[i].text.startswith("dropped by failover")
            ):
                dropped.append(lines[i].conn)
                lost += _list_count(lines[i].text, "lost")
                i += 1
            text = f"failover: the standby is promoted ({entry.text})"
            if dropped:
                text += f"; every connection is dropped: {', '.join(dropped)}"
            if lost:
                text += f"; {lost} pub/sub messages in flight are lost"
            events.append(_RedisEvent(entry.line, entry.time, "failover", text, "failover"))
        elif entry.verb == "drop":
            text = (
                f"Redis loses a pub/sub message to {_connection_words(entry.conn)}: "
                f"{_message_words(entry.text)}"
            )
            events.append(_RedisEvent(entry.line, entry.time, "message dropped", text, "drop"))
        elif entry.verb == "close" and not entry.text.startswith(
            ("closed by the client", "dropped by failover")
        ):
            reason = entry.text.split(";", 1)[0]
            failed = _list_count(entry.text, "failed")
            lost = _list_count(entry.text, "lost")
            text = (
                f"{_connection_words(entry.conn)} {reason}: {failed} commands failed, "
                f"{lost} pub/sub messages lost"
            )
            events.append(_RedisEvent(entry.line, entry.time, "connection lost", text, "close"))
    return events


def _publish_anchors(
    lines: Sequence[_TraceLine], history: Sequence[Mapping[str, Any]]
) -> list[tuple[int, int]]:
    """(trace line, history position) for each acknowledged emit whose publish script
    the trace shows. The record is appended after the script's reply, so anything the
    trace shows before that script happened before that record."""
    wanted: dict[tuple[str, int], int] = {}
    for position, record in enumerate(history):
        seq = _int_or_none(record.get("seq"))
        generation = _optional_str(record.get("generation"))
        if (
            record.get("type") == "Emitted"
            and record.get("outcome") == "ok"
            and seq is not None
            and generation is not None
        ):
            wanted.setdefault((generation, seq), position)
    anchors: list[tuple[int, int]] = []
    for entry in lines:
        if entry.verb != "exec" or " publish " not in f" {entry.text} ":
            continue
        reply = _REPLY_SEQ.search(entry.text)
        if reply is None:
            continue
        seq = int(reply.group("seq"))
        # The script's arguments include the generation id; one dict probe per word.
        for token in entry.text.split():
            index = wanted.pop((token, seq), None)
            if index is not None:
                anchors.append((entry.line, index))
                break
    return anchors


def _place_redis_events(
    events: Sequence[_RedisEvent],
    anchors: Sequence[tuple[int, int]],
    history: Sequence[Mapping[str, Any]],
) -> dict[int, list[_RedisEvent]]:
    """Which history position each Redis event is drawn before (``len(history)``: at
    the end).

    The trace and the history share the simulated clock (both start at 0 when the
    world starts) but not an order within one instant, and most of a run happens at
    t=0. So an event goes after every record of an earlier time, before every record
    of a later time and, within that window, before the first emit whose publish
    script Redis ran after it. Events keep their trace order.
    """
    times = [_float_or_none(r.get("time")) for r in history]
    placed: dict[int, list[_RedisEvent]] = {}
    floor = 0
    for event in events:
        instant = round(event.time, 3)
        lower = 0
        upper = len(history)
        for position, t in enumerate(times):
            if t is None:
                continue
            if round(t, 3) < instant:
                lower = position + 1
            elif round(t, 3) > instant:
                upper = min(upper, position)
                break
        later = [index for line, index in anchors if line > event.line]
        if later:
            upper = min(upper, min(later))
        position = max(lower, upper, floor)
        floor = position
        placed.setdefault(position, []).append(event)
    return placed


# -- records in words --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Arrow:
    source: str
    target: str
    label: str
    style: str  # CSS class: emit, emit-failed, deliver, terminal, gap


@dataclass(frozen=True, slots=True)
class _Mark:
    lane: str | None  # None: across every lane
    label: str
    style: str


@dataclass(frozen=True, slots=True)
class _Drawn:
    figure: _Arrow | _Mark
    words: str


def _event_words(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(arrow label, sentence part, arrow style) for a delivered event."""
    kind = event.get("type")
    seq = _text(event.get("seq"))
    if kind == "Chunk":
        return f"chunk seq {seq}", f"chunk seq {seq}", "deliver"
    if kind == "Done":
        return f"done seq {seq}", f"its terminal, done seq {seq}", "terminal"
    if kind == "Failure":
        message = _text(event.get("message"), "")
        return (
            f"error seq {seq}",
            f"its terminal, error seq {seq} (\u201c{message}\u201d)",
            "terminal",
        )
    if kind == "Gap":
        first, last = _text(event.get("first_seq")), _text(event.get("last_seq"))
        reason = _text(event.get("reason"))
        span = first if first == last else f"{first}\u2013{last}"
        return (
            f"gap {span}",
            f"a gap: seqs {span} are lost for good ({reason})",
            "gap",
        )
    return _text(kind, "event"), f"an event of unknown type {_text(kind)}", "deliver"


def _draw(
    record: Mapping[str, Any], sessions: _Sessions, generation_replica: Mapping[str, str]
) -> _Drawn:
    kind = _text(record.get("type"), "unknown")
    stream = _text(record.get("stream_id"))
    generation = _text(record.get("generation"))
    replica = _optional_str(record.get("replica"))
    session = _optional_str(record.get("session"))
    if kind == "Emitted" and replica is not None:
        what = _text(record.get("kind"))
        outcome = _text(record.get("outcome"))
        seq = _int_or_none(record.get("seq"))
        if outcome == "ok":
            label = f"{what} seq {seq}"
            words = (
                f"generator {generation} on {replica} emits a {what}; Redis logs and "
                f"publishes it as seq {seq} of stream {stream}"
            )
            return _Drawn(_Arrow(replica, "redis", label, "emit"), words)
        answer = "refused" if outcome == "fail" else "unknown (the reply was lost)"
        words = f"generator {generation} on {replica} tries to emit a {what}: {answer}"
        return _Drawn(_Arrow(replica, "redis", f"{what}: {outcome}", "emit-failed"), words)
    if kind == "Delivered" and session is not None:
        event = record.get("event")
        label, part, style = _event_words(event if isinstance(event, Mapping) else {})
        source = sessions.replica(session)
        opened = sessions.opened.get(session)
        event_generation = event.get("generation") if isinstance(event, Mapping) else None
        if opened is not None and event_generation != opened.get("generation"):
            part += f" of another turn, {_text(event_generation)}"
        if source is None:
            words = f"session {session} receives {part} (its replica is not recorded)"
            return _Drawn(_Mark(session, label, style), words)
        return _Drawn(
            _Arrow(source, session, label, style),
            f"{source} delivers {part} to session {session}",
        )
    if kind == "SessionOpened" and session is not None:
        mode = _text(record.get("mode"))
        first_seq = _text(record.get("first_seq"))
        words = (
            f"{_text(record.get('user_id'))} opens session {session}: {mode} to stream "
            f"{stream} (turn {generation}) on {_text(replica)}; owed every event from seq "
            f"{first_seq}"
        )
        snapshot = record.get("snapshot_seqs")
        if isinstance(snapshot, list) and snapshot:
            words += f", after a snapshot holding seqs {', '.join(str(s) for s in snapshot)}"
        owner = record.get("owner_id")
        if owner is not None and owner != record.get("user_id"):
            words += f" (the stream belongs to {_text(owner)})"
        return _Drawn(
            _Mark(session, f"{mode} via {_text(replica)}, from seq {first_seq}", "open"), words
        )
    if kind == "SessionClosed" and session is not None:
        reason = _text(record.get("reason"))
        why = {
            "terminal": "after its terminal",
            "detached": "the client left on purpose",
            "replica_crashed": "its replica crashed",
            "stream_failed": "the stream failed on its replica (resume elsewhere)",
            "closed": "the stream ended without a terminal",
        }.get(reason, reason)
        return _Drawn(
            _Mark(session, f"closed: {reason}", "close"), f"session {session} ends: {why}"
        )
    if kind == "GenerationStarted" and replica is not None:
        words = (
            f"{_text(record.get('user_id'))} starts turn {generation} of stream {stream} on "
            f"{replica}; its first event will be seq {_text(record.get('start_seq'))}"
        )
        return _Drawn(_Mark(replica, f"turn {generation} of {stream}", "start"), words)
    if kind == "GeneratorStopped":
        where = generation_replica.get(generation)
        words = f"generator {generation} of stream {stream} sees its abort and stops emitting"
        return _Drawn(_Mark(where, "generator stops", "stop"), words)
    if kind == "AbortRequested" and replica is not None:
        acknowledged = bool(record.get("acknowledged"))
        answer = "acknowledged (aborted)" if acknowledged else "not acknowledged"
        words = (
            f"{_text(record.get('user_id'))} asks {replica} to abort stream {stream} "
            f"(turn {generation}): {answer}, outcome {_text(record.get('outcome'))}"
        )
        return _Drawn(_Mark(replica, f"abort {stream}: {answer}", "abort"), words)
    if kind == "BoundExceeded" and replica is not None:
        resource = _text(record.get("resource"))
        value, limit = _text(record.get("value")), _text(record.get("limit"))
        words = (
            f"{replica} holds {value} in its {resource} for stream {stream}, over the "
            f"limit of {limit}"
        )
        return _Drawn(_Mark(replica, f"{resource}: {value} > {limit}", "bound"), words)
    if kind == "Healed":
        words = "faults stop and every timeout passes: from here on, liveness is judged"
        return _Drawn(_Mark(None, "healed", "healed"), words)
    words = f"{kind} record: {json.dumps(record, sort_keys=True, default=str)}"
    return _Drawn(_Mark(None, kind, "unknown"), words)


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
:root { --lane-line: #c8ccd4; --ink: #1f2328; --muted: #656d76; --bad: #b3261e;
  --bad-bg: #ffe3e0; --other-bg: #fff4f2; --good-bg: #e6f4ea; --good: #1e7d34; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  margin: 0; padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85em; }
dl.ran { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0; }
dl.ran dt { color: var(--muted); }
dl.ran dd { margin: 0; }
.verdict { font-weight: 600; padding: .4rem .6rem; border-radius: 4px; display: inline-block; }
.verdict.failed { background: var(--bad-bg); color: var(--bad); }
.verdict.ok { background: var(--good-bg); color: var(--good); }
ol.anomalies li { margin: .25rem 0; }
ol.anomalies li.first { font-weight: 600; }
.legend { color: var(--muted); max-width: 70rem; }
.swatch { display: inline-block; width: .9rem; height: .9rem; vertical-align: -2px;
  border-radius: 2px; margin: 0 .2rem; }
.timeline { overflow-x: auto; border: 1px solid #d0d7de; border-radius: 6px; margin-top: .5rem; }
.grid { min-width: var(--min-width); }
.row { display: grid; grid-template-columns: var(--columns); column-gap: 0;
  border-top: 1px solid #eef0f3; min-height: 2.4rem; }
.row > * { grid-row: 1; min-width: 0; }
.row.head { position: sticky; top: 0; background: #f6f8fa; z-index: 2; border-top: 0;
  border-bottom: 1px solid #d0d7de; }
.lane-head { padding: .35rem .4rem; text-align: center; }
.lane-head .title { font-weight: 600; display: block; }
.lane-head .subtitle { color: var(--muted); font-size: .78rem; display: block; }
.lane-head.session .title { color: #0b5cad; }
.lane-head.replica .title { color: #1e7d34; }
.lane-head.redis .title { color: #b3261e; }
.notes-head { padding: .35rem .6rem; font-weight: 600; }
.lane-head.involved { box-shadow: inset 0 -3px 0 var(--bad); }
.c-index, .c-time { padding: .45rem .4rem; color: var(--muted); font-variant-numeric: tabular-nums;
  text-align: right; }
.c-index a { color: inherit; text-decoration: none; }
.lane-cell { background: linear-gradient(var(--lane-line), var(--lane-line))
  no-repeat center / 1px 100%; }
.note { padding: .45rem .6rem; border-left: 1px solid #eef0f3; }
.note p { margin: 0; }
.note .explanation { color: var(--bad); font-weight: 600; margin-top: .25rem; }
.note .last-good-tag { color: var(--good); margin-top: .25rem; }
.arrow { position: relative; color: #3d4a5c; align-self: stretch; z-index: 1; min-height: 2.4rem; }
/* The label sits just above the line whatever the row's height (notes can wrap). */
.arrow .label { position: absolute; left: calc(50% / var(--span)); right: calc(50% / var(--span));
  bottom: .75rem; text-align: center; font-size: .8rem; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.arrow .line { position: absolute; left: calc(50% / var(--span)); right: calc(50% / var(--span));
  bottom: .55rem; border-top: 2px solid currentColor; }
.arrow .line::after { content: ""; position: absolute; top: -6px; border-top: 5px solid transparent;
  border-bottom: 5px solid transparent; }
.arrow.to-right .line::after { right: -2px; border-left: 10px solid currentColor; }
.arrow.to-left .line::after { left: -2px; border-right: 10px solid currentColor; }
.arrow.emit { color: #3d4a5c; }
.arrow.emit-failed { color: #8c959f; }
.arrow.emit-failed .line { border-top-style: dashed; }
.arrow.deliver { color: #0b5cad; }
.arrow.terminal { color: #6f42c1; }
.arrow.gap { color: #bc4c00; }
.arrow.gap .line { border-top-style: dotted; border-top-width: 3px; }
.mark { align-self: center; justify-self: center; z-index: 1; max-width: 96%; font-size: .78rem;
  text-align: center; background: #fff; border: 1px solid #afb8c1; border-radius: 10px;
  padding: .1rem .45rem; }
.mark.open { border-color: #0b5cad; color: #0b5cad; }
.mark.close { border-style: dashed; }
.mark.start { border-color: #1e7d34; color: #1e7d34; }
.mark.abort, .mark.bound { border-color: #bc4c00; color: #bc4c00; }
.mark.healed, .mark.unknown { justify-self: stretch; border-radius: 4px; background: #f6f8fa; }
.mark.redis-event { border-color: var(--bad); color: var(--bad); background: #fff8f7; }
.row.redis-row { background: #fffafa; }
.row.redis-row .c-index { font-style: italic; }
.row.last-good { background: var(--good-bg); }
.row.anomalous-other { background: var(--other-bg); }
.row.anomalous { background: var(--bad-bg); outline: 2px solid var(--bad); outline-offset: -2px; }
.row.anomalous .arrow, .row.anomalous-other .arrow { color: var(--bad); }
.row.anomalous .mark { border-color: var(--bad); color: var(--bad); border-width: 2px; }
details { margin-top: 1rem; }
details pre { max-height: 40rem; overflow: auto; background: #f6f8fa; padding: .6rem;
  border-radius: 6px; white-space: pre; }
"""


@dataclass(frozen=True, slots=True)
class _Anomaly:
    number: int  # 1-based, in the report's order
    kind: str
    first_bad: int | None
    last_good: int | None
    session: str | None
    explanation: str


def _anomalies(report: Mapping[str, Any]) -> list[_Anomaly]:
    found: list[_Anomaly] = []
    for number, item in enumerate(_dicts(report.get("anomalies")), start=1):
        found.append(
            _Anomaly(
                number=number,
                kind=_text(item.get("kind")),
                first_bad=_int_or_none(item.get("first_bad")),
                last_good=_int_or_none(item.get("last_good")),
                session=_optional_str(item.get("session")),
                explanation=_text(item.get("explanation"), ""),
            )
        )
    return found


def _anomaly_line(anomaly: _Anomaly, row_ids: Mapping[int, str]) -> str:
    if anomaly.first_bad is None:
        where = "at no record"
    elif anomaly.first_bad in row_ids:
        target = row_ids[anomaly.first_bad]
        where = f'at <a href="#{_e(target)}">record {anomaly.first_bad}</a>'
    else:
        where = f"at record {anomaly.first_bad} (not in the history)"
    good = "none" if anomaly.last_good is None else str(anomaly.last_good)
    return (
        f"<strong>{_e(anomaly.kind)}</strong> {where} (last good {_e(good)}): "
        f"{_e(anomaly.explanation)}"
    )


def _header(
    replay: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    anomalies: Sequence[_Anomaly],
    row_ids: Mapping[int, str],
) -> list[str]:
    name = _text(replay.get("name"), "(unnamed run)")
    canaries = replay.get("canaries")
    canary_text = (
        ", ".join(str(c) for c in canaries)
        if isinstance(canaries, list) and canaries
        else "none (the correct implementation)"
    )
    decisions = replay.get("decisions")
    trace = replay.get("redis_trace")
    rows: list[tuple[str, str]] = [
        ("run", name),
        ("canaries", canary_text),
        ("replicas", _text(replay.get("replicas"))),
    ]
    if replay.get("hypothesis_seed") is not None:
        rows.append(("hypothesis seed", _text(replay.get("hypothesis_seed"))))
    rows.append(
        (
            "size",
            f"{len(decisions) if isinstance(decisions, list) else 0} decisions, "
            f"{len(history)} history records, "
            f"{len(trace) if isinstance(trace, list) else 0} Redis trace lines",
        )
    )
    for key in sorted(k for k in replay if k not in _KNOWN_KEYS):
        rows.append((key, json.dumps(replay[key], sort_keys=True, default=str)))
    if replay.get("format") is not None:
        rows.append(("replay format", _text(replay.get("format"))))

    report = replay.get("report")
    report = report if isinstance(report, Mapping) else {}
    out = [f"<h1>streamcheck timeline: {_e(name)}</h1>", '<dl class="ran">']
    for key, value in rows:
        out.append(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>")
    out.append("</dl>")
    if anomalies:
        kinds = ", ".join(f"{_e(k)} {_e(n)}" for k, n in sorted(_by_kind(anomalies).items()))
        out.append(
            f'<p class="verdict failed">verdict: FAILED, {len(anomalies)} '
            f"anomal{'y' if len(anomalies) == 1 else 'ies'} ({kinds})</p>"
        )
    elif report.get("ok") is False:
        out.append('<p class="verdict failed">verdict: FAILED (no anomaly recorded)</p>')
    elif not report:
        out.append('<p class="verdict failed">verdict: unknown, the file holds no report</p>')
    else:
        out.append('<p class="verdict ok">verdict: ok, no anomaly</p>')
    statistics = report.get("statistics")
    if isinstance(statistics, Mapping):
        out.append(f'<p class="statistics">{_e(_statistics_words(statistics))}</p>')
    if anomalies:
        out.append("<h2>What the checker found</h2>")
        out.append('<ol class="anomalies">')
        for anomaly in anomalies:
            css = ' class="first"' if anomaly.number == 1 else ""
            out.append(f"<li{css}>{_anomaly_line(anomaly, row_ids)}</li>")
        out.append("</ol>")
    return out


def _by_kind(anomalies: Iterable[_Anomaly]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for anomaly in anomalies:
        counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
    return counts


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


_LEGEND = (
    "How to read it: time runs downwards, one row per history record (its index and "
    "simulated time in seconds on the left). Columns are lanes: each client session "
    "(with its user, mode and replica), each replica, and Redis. An arrow from a replica "
    "to Redis is an emit (dashed: refused or unknown), from a replica to a client a "
    "delivery (purple: a terminal, dotted orange: a gap). Rounded boxes are marks: a "
    "session opening or closing, a turn starting, an abort, a bound exceeded, the heal. "
    "Rows in italics with a red box on the Redis lane are Redis faults from the trace "
    "(failover, lost message, lost connection), placed by simulated time and before "
    "the first emit Redis ran after them; within one instant their order against the "
    "records is approximate. "
)


def _row(
    *,
    index_html: str,
    time_text: str,
    lane_count: int,
    figure_html: str,
    note_html: str,
    classes: Sequence[str],
    row_id: str | None,
    data: Mapping[str, str],
) -> str:
    attributes = [f'class="{_e(" ".join(classes))}"']
    if row_id is not None:
        attributes.append(f'id="{_e(row_id)}"')
    attributes.extend(f'data-{key}="{_e(value)}"' for key, value in sorted(data.items()))
    cells = "".join(
        f'<div class="lane-cell" style="grid-column:{_FIRST_LANE_COLUMN + i}"></div>'
        for i in range(lane_count)
    )
    note_column = _FIRST_LANE_COLUMN + lane_count
    return (
        f"<div {' '.join(attributes)}>"
        f'<div class="c-index" style="grid-column:{_INDEX_COLUMN}">{index_html}</div>'
        f'<div class="c-time" style="grid-column:{_TIME_COLUMN}">{_e(time_text)}</div>'
        f"{cells}{figure_html}"
        f'<div class="note" style="grid-column:{note_column}">{note_html}</div>'
        "</div>"
    )


def _figure_html(figure: _Arrow | _Mark, lane_index: Mapping[str, int], lane_count: int) -> str:
    if isinstance(figure, _Arrow):
        source, target = lane_index[figure.source], lane_index[figure.target]
        low, high = min(source, target), max(source, target)
        direction = "to-right" if target > source else "to-left"
        span = high - low + 1
        start = _FIRST_LANE_COLUMN + low
        return (
            f'<div class="arrow {_e(figure.style)} {direction}" '
            f'data-from="{_e(figure.source)}" data-to="{_e(figure.target)}" '
            f'style="grid-column:{start} / span {span};--span:{span}">'
            f'<span class="label">{_e(figure.label)}</span><span class="line"></span></div>'
        )
    if figure.lane is None or figure.lane not in lane_index:
        column = f"{_FIRST_LANE_COLUMN} / span {lane_count}"
        lane_attribute = ""
    else:
        column = str(_FIRST_LANE_COLUMN + lane_index[figure.lane])
        lane_attribute = f' data-lane="{_e(figure.lane)}"'
    return (
        f'<div class="mark {_e(figure.style)}"{lane_attribute} style="grid-column:{column}">'
        f"{_e(figure.label)}</div>"
    )


def render_timeline(replay: Mapping[str, Any]) -> str:
    """The replay file's JSON (as loaded by ``json.loads``) as one self-contained HTML
    page. Pure and deterministic: the same input gives the same string."""
    history = _dicts(replay.get("history"))
    report = replay.get("report")
    anomalies = _anomalies(report if isinstance(report, Mapping) else {})
    lanes, sessions, generation_replica = _collect_lanes(history)
    lane_index = {lane.key: i for i, lane in enumerate(lanes)}
    trace = replay.get("redis_trace")
    trace_lines = _parse_trace(trace if isinstance(trace, list) else [])
    placed = _place_redis_events(
        _redis_events(trace_lines), _publish_anchors(trace_lines, history), history
    )

    first = anomalies[0] if anomalies else None
    history_indexes = {_int_or_none(r.get("index")) for r in history}
    # The first anomaly's record gets the fixed id a reader (or a test) can jump to;
    # every other record is addressable by its index.
    row_ids: dict[int, str] = {}
    for position, record in enumerate(history):
        index = _int_or_none(record.get("index"))
        index = position if index is None else index
        row_ids[index] = (
            "first-anomaly" if first is not None and first.first_bad == index else f"rec-{index}"
        )
    bad_at: dict[int, list[_Anomaly]] = {}
    good_at: dict[int, list[_Anomaly]] = {}
    for anomaly in anomalies:
        if anomaly.first_bad is not None:
            bad_at.setdefault(anomaly.first_bad, []).append(anomaly)
        if anomaly.last_good is not None:
            good_at.setdefault(anomaly.last_good, []).append(anomaly)
    involved = {first.session} if first is not None and first.session is not None else set()

    rows: list[str] = []
    head_cells = [
        f'<div class="c-index" style="grid-column:{_INDEX_COLUMN}">#</div>',
        f'<div class="c-time" style="grid-column:{_TIME_COLUMN}">time (s)</div>',
    ]
    for i, lane in enumerate(lanes):
        classes = ["lane-head", lane.kind] + (["involved"] if lane.key in involved else [])
        head_cells.append(
            f'<div class="{" ".join(classes)}" data-lane="{_e(lane.key)}" '
            f'style="grid-column:{_FIRST_LANE_COLUMN + i}">'
            f'<span class="title">{_e(lane.title)}</span>'
            f'<span class="subtitle">{_e(lane.subtitle)}</span></div>'
        )
    head_cells.append(
        f'<div class="notes-head" style="grid-column:{_FIRST_LANE_COLUMN + len(lanes)}">'
        '<span class="title">what happened</span></div>'
    )
    rows.append(f'<div class="row head">{"".join(head_cells)}</div>')

    def redis_rows(position: int) -> None:
        for event in placed.get(position, []):
            figure = _Mark("redis", event.label, f"redis-event redis-{event.verb}")
            rows.append(
                _row(
                    index_html="",
                    time_text=f"{event.time:.3f}",
                    lane_count=len(lanes),
                    figure_html=_figure_html(figure, lane_index, len(lanes)),
                    note_html=f"<p>{_e(event.text)}</p>",
                    classes=["row", "redis-row"],
                    row_id=None,
                    data={"trace-line": str(event.line)},
                )
            )

    for position, record in enumerate(history):
        redis_rows(position)
        index = _int_or_none(record.get("index"))
        index = position if index is None else index
        drawn = _draw(record, sessions, generation_replica)
        classes = ["row", "record", f"t-{_text(record.get('type'), 'unknown').lower()}"]
        notes = [f"<p>{_e(drawn.words)}</p>"]
        for anomaly in bad_at.get(index, []):
            notes.append(
                f'<p class="explanation">anomaly {anomaly.number}, {_e(anomaly.kind)}: '
                f"{_e(anomaly.explanation)}</p>"
            )
        for anomaly in good_at.get(index, []):
            notes.append(
                f'<p class="last-good-tag">last good record before anomaly {anomaly.number} '
                f"({_e(anomaly.kind)})</p>"
            )
        if first is not None and first.first_bad == index:
            classes.append("anomalous")
        elif index in bad_at:
            classes.append("anomalous-other")
        if index in good_at:
            classes.append("last-good")
        rows.append(
            _row(
                index_html=f'<a href="#{_e(row_ids[index])}">{_e(index)}</a>',
                time_text=_time_text(record.get("time")),
                lane_count=len(lanes),
                figure_html=_figure_html(drawn.figure, lane_index, len(lanes)),
                note_html="".join(notes),
                classes=classes,
                row_id=row_ids[index],
                data={"index": str(index), "type": _text(record.get("type"), "unknown")},
            )
        )
    redis_rows(len(history))

    missing = (
        first is not None and first.first_bad is not None and first.first_bad not in history_indexes
    )
    columns = f"3rem 4.2rem repeat({len(lanes)}, minmax(8.5rem, 1fr)) minmax(18rem, 2fr)"
    min_width = f"calc(7.2rem + {len(lanes)} * 8.5rem + 18rem)"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>timeline: {_e(_text(replay.get('name'), 'run'))}</title>",
        f"<style>{_CSS}.grid {{ --columns: {columns}; --min-width: {min_width}; }}\n</style>",
        "</head>",
        "<body>",
        '<header id="summary">',
        *_header(replay, history, anomalies, row_ids),
        "</header>",
    ]
    if missing and first is not None:
        out.append(
            f'<p class="verdict failed">The first anomaly names record {first.first_bad}, '
            "which this history does not hold.</p>"
        )
    out += [
        "<h2>Timeline</h2>",
        f'<p class="legend">{_e(_LEGEND)}The first anomalous record has a red frame '
        '<span class="swatch" style="background:#ffe3e0;outline:2px solid #b3261e"></span>'
        "and the checker's sentence; the last good record before it is green "
        '<span class="swatch" style="background:#e6f4ea"></span>.</p>',
        '<div class="timeline"><div class="grid" id="timeline">',
        *rows,
        "</div></div>",
        _decisions_section(replay.get("decisions")),
        _trace_section(trace if isinstance(trace, list) else []),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _decisions_section(decisions: object) -> str:
    items: list[str] = []
    if isinstance(decisions, list):
        for decision in decisions:
            if isinstance(decision, list) and len(decision) == 2:
                name, args = decision
                inner = (
                    ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(args.items()))
                    if isinstance(args, Mapping)
                    else json.dumps(args, default=str)
                )
                items.append(f"<li><code>{_e(name)}({_e(inner)})</code></li>")
            else:
                items.append(f"<li><code>{_e(json.dumps(decision, default=str))}</code></li>")
    return (
        f'<details id="decisions"><summary>Decisions that drove the run ({len(items)}; '
        "<code>streamcheck replay</code> re-runs them)</summary>"
        f'<ol start="1">{"".join(items)}</ol></details>'
    )


def _trace_section(trace: Sequence[object]) -> str:
    text = "\n".join(_e(line) for line in trace)
    return (
        f'<details id="redis-trace"><summary>Redis trace ({len(trace)} lines: every command, '
        "delivery, replication and fault the simulated Redis ran, time in seconds)</summary>"
        f"<pre>{text}</pre></details>"
    )


def write_timeline(replay_file: Path, out: Path) -> Path:
    """Render ``replay_file`` (a replay file's JSON) to ``out`` and return the path
    written. ``out`` is the page's path; if it is an existing directory the page is
    ``out / TIMELINE_FILENAME``. Parent directories are created."""
    replay = json.loads(replay_file.read_text(encoding="utf-8"))
    if not isinstance(replay, Mapping):
        raise ValueError(f"{replay_file}: a replay file holds a JSON object")
    target = out / TIMELINE_FILENAME if out.is_dir() else out
    target.parent.mkdir(parents=True, exist_ok=True)
    # newline="\n": the same bytes on every platform, so the page can be diffed.
    with target.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(render_timeline(replay))
    return target
