"""``timeline.html``: one failing run drawn as a sequence diagram a person can read.

Input is the JSON of a replay file (``properties/_replay.py``: ``name``, ``canaries``,
``replicas``, ``decisions``, ``history``, ``report``, ``redis_records``, ...). Output is
one HTML page with everything inline: no script, no network, no external asset, so it
opens from a CI artefact or a mail attachment, and renders the same with JavaScript
disabled.

What is drawn where is decided by :func:`~._layout.layout_timeline` (lanes, rows, the
first anomaly's mechanism in words); this module only turns that layout into markup,
with the style sheet ``timeline.css`` (package data) inlined.

Page order: a summary box first, visible without scrolling (the verdict, the first
anomaly's sentence with a link to its row, and its mechanism as the Redis records show
it), then what ran (in words, the minimizer's summary included), the anomalies, the
diagram, the decisions and the Redis trace folded away.

The renderer is a pure function of its input (no clock, no randomness, lanes in a
fixed order), so the same replay file always yields the same bytes.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from streamcheck.properties.report._layout import layout_timeline
from streamcheck.properties.report._shapes import Anomaly, Arrow, Mark, Row, TimelineLayout

__all__ = ["TIMELINE_FILENAME", "render_timeline", "write_timeline"]

#: The conventional file name of the page, one per failure.
TIMELINE_FILENAME = "timeline.html"

#: Fixed columns before the lanes (row number, simulated time) and after them (words).
_INDEX_COLUMN = 1
_TIME_COLUMN = 2
_FIRST_LANE_COLUMN = 3


def _e(value: object) -> str:
    """Escape anything for text and for double-quoted attribute values."""
    return html.escape(str(value), quote=True)


@functools.cache
def _css() -> str:
    """The style sheet, shipped in the wheel next to this module."""
    return (resources.files("streamcheck.properties.report") / "timeline.css").read_text(
        encoding="utf-8"
    )


_LEGEND = (
    "How to read it: time runs downwards, one row per history record (its index and "
    "simulated time in seconds on the left) and, in italics, one per step of Redis that "
    "shows the mechanism. Columns are lanes: each client session (with its user, mode "
    "and replica), every replica of the run, and Redis. An arrow from a replica to Redis "
    "is an emit (dashed: refused or unknown), from a replica to a client a delivery "
    "(purple: a terminal, dotted orange: a gap). Violet arrows are a replica's SUBSCRIBE "
    "running in Redis (dashed) and its acknowledgement coming back; green dashed arrows "
    "are log reads (a catch-up for a session that just attached, or a repair). Rounded "
    "boxes are marks: a session opening or closing, a turn starting, an abort, a bound "
    "exceeded, the heal; grey boxes on the Redis lane are publishes (with the replicas "
    "they reached), red ones faults (a dropped message, a lost connection, a failover). "
)


def _row_html(row: Row, lane_index: Mapping[str, int], lane_count: int) -> str:
    classes = ["row", "record" if row.kind == "record" else "", *row.classes]
    attributes = [f'class="{_e(" ".join(c for c in classes if c))}"', f'id="{_e(row.row_id)}"']
    attributes.extend(f'data-{key}="{_e(value)}"' for key, value in sorted(row.data))
    cells = "".join(
        f'<div class="lane-cell" style="grid-column:{_FIRST_LANE_COLUMN + i}"></div>'
        for i in range(lane_count)
    )
    if row.kind == "record":
        index_html = f'<a href="#{_e(row.row_id)}">{_e(row.index)}</a>'
    else:
        index_html = f'<a href="#{_e(row.row_id)}" title="Redis step">\u00b7</a>'
    time_text = "" if row.time is None else f"{row.time:.3f}"
    notes = [f"<p>{_e(row.words)}</p>"]
    notes.extend(f'<p class="{_e(css)}">{_e(text)}</p>' for css, text in row.notes)
    note_column = _FIRST_LANE_COLUMN + lane_count
    return (
        f"<div {' '.join(attributes)}>"
        f'<div class="c-index" style="grid-column:{_INDEX_COLUMN}">{index_html}</div>'
        f'<div class="c-time" style="grid-column:{_TIME_COLUMN}">{_e(time_text)}</div>'
        f"{cells}{_figure_html(row.figure, lane_index, lane_count)}"
        f'<div class="note" style="grid-column:{note_column}">{"".join(notes)}</div>'
        "</div>"
    )


def _figure_html(figure: Arrow | Mark, lane_index: Mapping[str, int], lane_count: int) -> str:
    if isinstance(figure, Arrow):
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


def _anomaly_line(anomaly: Anomaly, row_ids: Mapping[int, str]) -> str:
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


def _summary_box(layout: TimelineLayout) -> list[str]:
    """The first thing on the page: the verdict, the first anomaly and its mechanism."""
    css, verdict = layout.verdict
    out = [f'<section id="first-failure" class="summary-box {_e(css)}">']
    out.append(f'<p class="verdict {_e(css)}">{_e(verdict)}</p>')
    if layout.anomalies:
        first = layout.anomalies[0]
        if first.first_bad is not None and first.first_bad in layout.row_ids:
            jump = (
                f'<a class="jump" href="#{_e(layout.row_ids[first.first_bad])}">'
                f"go to record {first.first_bad} in the diagram</a>"
            )
        else:
            jump = "(its record is not in the history)"
        out.append(f"<h2>First anomaly: {_e(first.kind)}</h2><p>{_e(first.explanation)} {jump}</p>")
        if layout.mechanism:
            out.append('<p>What Redis\'s steps show:</p><ol class="mechanism">')
            for sentence, row_id in layout.mechanism:
                link = f' <a href="#{_e(row_id)}">(row)</a>' if row_id is not None else ""
                out.append(f"<li>{_e(sentence)}{link}</li>")
            out.append("</ol>")
    out.append("</section>")
    return out


def _header(layout: TimelineLayout) -> list[str]:
    out = [f"<h1>streamcheck timeline: {_e(layout.name)}</h1>", *_summary_box(layout)]
    out.append('<dl class="ran">')
    for key, value in layout.ran:
        out.append(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>")
    out.append("</dl>")
    if layout.statistics is not None:
        out.append(f'<p class="statistics">{_e(layout.statistics)}</p>')
    for note in layout.notes:
        out.append(f'<p class="statistics">{_e(note)}</p>')
    if layout.anomalies:
        out.append("<h2>What the checker found</h2>")
        out.append('<ol class="anomalies">')
        for anomaly in layout.anomalies:
            css = ' class="first"' if anomaly.number == 1 else ""
            out.append(f"<li{css}>{_anomaly_line(anomaly, layout.row_ids)}</li>")
        out.append("</ol>")
    return out


def _decisions_section(decisions: Sequence[str]) -> str:
    items = "".join(f"<li><code>{_e(d)}</code></li>" for d in decisions)
    return (
        f'<details id="decisions"><summary>Decisions that drove the run ({len(decisions)}; '
        "<code>streamcheck replay</code> re-runs them)</summary>"
        f'<ol start="1">{items}</ol></details>'
    )


def _trace_section(lines: Sequence[str]) -> str:
    text = "\n".join(_e(line) for line in lines)
    return (
        f'<details id="redis-trace"><summary>Redis trace ({len(lines)} steps: every command, '
        "delivery, replication and fault the simulated Redis ran, time in seconds)</summary>"
        f"<pre>{text}</pre></details>"
    )


def render_layout(layout: TimelineLayout) -> str:
    """The layout as one self-contained HTML page."""
    lanes = layout.lanes
    lane_index = {lane.key: i for i, lane in enumerate(lanes)}
    head_cells = [
        f'<div class="c-index" style="grid-column:{_INDEX_COLUMN}">#</div>',
        f'<div class="c-time" style="grid-column:{_TIME_COLUMN}">time (s)</div>',
    ]
    for i, lane in enumerate(lanes):
        classes = ["lane-head", lane.kind] + (["involved"] if lane.key in layout.involved else [])
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
    rows = [f'<div class="row head">{"".join(head_cells)}</div>']
    rows.extend(_row_html(row, lane_index, len(lanes)) for row in layout.rows)
    columns = f"3rem 4.2rem repeat({len(lanes)}, minmax(8.5rem, 1fr)) minmax(18rem, 2fr)"
    min_width = f"calc(7.2rem + {len(lanes)} * 8.5rem + 18rem)"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>timeline: {_e(layout.name)}</title>",
        f"<style>{_css()}.grid {{ --columns: {columns}; --min-width: {min_width}; }}\n</style>",
        "</head>",
        "<body>",
        '<header id="summary">',
        *_header(layout),
        "</header>",
    ]
    if layout.missing_first and layout.anomalies:
        out.append(
            f'<p class="verdict failed">The first anomaly names record '
            f"{layout.anomalies[0].first_bad}, which this history does not hold.</p>"
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
        _decisions_section(layout.decisions),
        _trace_section(layout.trace_lines),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def render_timeline(replay: Mapping[str, Any]) -> str:
    """The replay file's JSON (as loaded by ``json.loads``) as one self-contained HTML
    page. Pure and deterministic: the same input gives the same string."""
    return render_layout(layout_timeline(replay))


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
