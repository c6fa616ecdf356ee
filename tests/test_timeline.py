"""timeline.html: the page a person reads for a failure.

The input is a real replay file: a fixed decision list run with the
``subscriber-before-ack`` canary and written by ``write_replay_file``, so the page is
tested on exactly what a failing campaign writes. The same facts (every lane, one arrow
per emit or delivery, the first anomaly highlighted and explained) are checked twice:
on the HTML parsed with ``html.parser``, and on the DOM Debian's chromium builds when
it loads the page, plus the geometry chromium lays out (arrows start and end on lane
centres). The browser test is skipped when chromium is not installed
(``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from streamcheck.properties import report
from streamcheck.properties._replay import seed_scheduler, write_replay_file
from streamcheck.properties._simulation import Decision, Simulation
from streamcheck.properties.canaries import Canary
from streamcheck.properties.report import (
    TIMELINE_FILENAME,
    layout_timeline,
    render_timeline,
    write_timeline,
)

#: A hand-made run of the ``subscriber-before-ack`` canary (``streamcheck run --canary
#: subscriber-before-ack --seed 0`` shrinks to a shorter one, a terminal before its
#: chunks, with no fault to show): session s1 opens on r1, whose SUBSCRIBE Redis runs
#: only after chunk 0 was published and which never reads the log, so s1 never gets
#: seq 0; then one pub/sub message to r0 is dropped, and r0's reader (with the canary's
#: force-flush) skips seq 1 as well. The checker finds ``skipped_without_gap`` twice,
#: the first at s1's delivery of seq 1.
DECISIONS: list[tuple[str, dict[str, Any]]] = [
    ("create", {"replica": 0, "stream": "s0"}),
    ("settle", {}),
    ("subscribe", {"replica": 0, "stream": "s0"}),
    ("subscribe", {"replica": 1, "stream": "s0"}),
    ("emit", {"stream": "s0"}),
    ("settle", {}),
    ("burst", {"n": 2, "stream": "s0"}),
    ("drop", {"k": 0}),
    ("settle", {}),
    ("emit", {"stream": "s0"}),
    ("settle", {}),
]

CHROMIUM_TIMEOUT_S = 90


def run_decisions(path: Path, canaries: frozenset[Canary]) -> Path:
    """Run the decisions as ``replay_decisions`` does, but keep the Simulation so that
    the real writer stores its Redis records too."""
    seed_scheduler()  # the same scheduler seed as Hypothesis and `streamcheck replay`
    logging.disable(logging.WARNING)
    simulation = Simulation(replicas=2, canaries=canaries)
    try:
        for name, args in DECISIONS:
            simulation.apply(Decision(name, dict(args)))
        report = simulation.safety_report()
        if report.ok:
            report = simulation.heal()
        write_replay_file(path, name="subscriber-before-ack", simulation=simulation, report=report)
    finally:
        simulation.close()
        logging.disable(logging.NOTSET)
    return path


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timeline") / "run.json"
    return run_decisions(path, frozenset({Canary.SUBSCRIBER_BEFORE_ACK}))


@pytest.fixture(scope="module")
def replay(replay_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(replay_file.read_text())
    kinds = [a["kind"] for a in data["report"]["anomalies"]]
    # If the canary or the simulation changes, this fixture needs a new decision list
    # (take the one `streamcheck run --canary subscriber-before-ack` prints).
    assert kinds == ["skipped_without_gap", "skipped_without_gap"], kinds
    first = data["report"]["anomalies"][0]
    assert data["history"][first["first_bad"]]["type"] == "Delivered"
    assert any(r["type"] == "MessageDropped" for r in data["redis_records"])
    return data


# -- a small DOM from html.parser ---------------------------------------------------------

_VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    parts: list[str | Node] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, css_class: str) -> list[Node]:
        return [n for n in self.walk() if css_class in n.classes]

    def by_id(self, element_id: str) -> Node | None:
        return next((n for n in self.walk() if n.attrs.get("id") == element_id), None)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


# -- the facts the page must show ----------------------------------------------------------


def expected_lanes(replay: Mapping[str, Any]) -> list[str]:
    """Sessions by first appearance, every replica of the run, Redis."""
    sessions = [r["session"] for r in replay["history"] if r["type"] == "SessionOpened"]
    return [*sessions, *(f"r{i}" for i in range(replay["replicas"])), "redis"]


def check_page(root: Node, replay: Mapping[str, Any]) -> None:
    history = replay["history"]
    anomalies = replay["report"]["anomalies"]

    lanes = [n.attrs["data-lane"] for n in root.find_all("lane-head")]
    assert lanes == expected_lanes(replay)

    records = root.find_all("record")
    assert [int(n.attrs["data-index"]) for n in records] == [r["index"] for r in history]

    drawable = [r for r in history if r["type"] in ("Emitted", "Delivered")]
    arrows = [arrow for row in records for arrow in row.find_all("arrow")]
    assert len(arrows) == len(drawable)
    opened = {r["session"]: r["replica"] for r in history if r["type"] == "SessionOpened"}
    for row, record in zip(records, history, strict=True):
        row_arrows = row.find_all("arrow")
        if record["type"] == "Emitted":
            [arrow] = row_arrows
            assert (arrow.attrs["data-from"], arrow.attrs["data-to"]) == (
                record["replica"],
                "redis",
            )
        elif record["type"] == "Delivered":
            [arrow] = row_arrows
            assert (arrow.attrs["data-from"], arrow.attrs["data-to"]) == (
                opened[record["session"]],
                record["session"],
            )
        else:
            assert row_arrows == [] and len(row.find_all("mark")) == 1

    [highlighted] = root.find_all("anomalous")
    first = root.by_id("first-anomaly")
    assert first is highlighted
    assert int(first.attrs["data-index"]) == anomalies[0]["first_bad"]
    assert anomalies[0]["explanation"] in first.text()
    for anomaly in anomalies[1:]:
        other = root.by_id(f"rec-{anomaly['first_bad']}")
        assert other is not None and "anomalous-other" in other.classes
        assert anomaly["explanation"] in other.text()
    last_good = anomalies[0]["last_good"]
    good_row = root.by_id(f"rec-{last_good}")
    assert good_row is not None and "last-good" in good_row.classes

    summary = root.by_id("summary")
    assert summary is not None
    for anomaly in anomalies:
        assert anomaly["explanation"] in summary.text()
    for canary in replay["canaries"]:
        assert canary in summary.text()
    # The box at the top names the first anomaly and links to its row.
    box = root.by_id("first-failure")
    assert box is not None and anomalies[0]["explanation"] in box.text()
    assert any(n.attrs.get("href") == "#first-anomaly" for n in box.walk())


def rows_of(root: Node) -> list[Node]:
    return [n for n in root.walk() if "row" in n.classes and "head" not in n.classes]


def test_the_page_shows_lanes_arrows_and_the_first_anomaly(replay: dict[str, Any]) -> None:
    check_page(parse(render_timeline(replay)), replay)


def test_the_dropped_message_is_a_mark_on_the_redis_lane_in_its_place(
    replay: dict[str, Any],
) -> None:
    rows = rows_of(parse(render_timeline(replay)))
    [drop] = [i for i, n in enumerate(rows) if "redis-drop" in n.classes]
    [mark] = rows[drop].find_all("redis-event")
    assert mark.attrs["data-lane"] == "redis"
    assert "loses the pub/sub message chunk seq 1" in rows[drop].text()
    record = replay["redis_records"][int(rows[drop].attrs["data-redis-record"])]
    assert record["type"] == "MessageDropped" and record["connection"].startswith("r0.")
    emits = {(r["kind"], r["seq"]): r["index"] for r in replay["history"] if r["type"] == "Emitted"}
    order = {int(n.attrs["data-index"]): i for i, n in enumerate(rows) if "record" in n.classes}
    # The drop decision came after the burst (chunks 1 and 2) and before the next emit
    # (chunk 3) was published: the mark sits between the two.
    assert order[emits[("chunk", 2)]] < drop < order[emits[("chunk", 3)]]


def test_the_subscribe_acknowledgement_arrives_after_the_publish_it_missed(
    replay: dict[str, Any],
) -> None:
    """The mechanism, not only the symptom: r1's SUBSCRIBE runs, and its
    acknowledgement arrives, after chunk 0 was published to r0 only; r1 never reads the
    log; the summary box says so before the diagram."""
    root = parse(render_timeline(replay))
    rows = rows_of(root)

    def first_row(css: str, text: str) -> int:
        return next(i for i, n in enumerate(rows) if css in n.classes and text in n.text())

    opened = first_row("t-sessionopened", "session s1")
    published = first_row("redis-publish", "chunk seq 0")
    subscribed = first_row("redis-subscribe", "r1's SUBSCRIBE")
    acknowledged = first_row("redis-ack", "r1's SUBSCRIBE")
    first_bad = next(i for i, n in enumerate(rows) if n.attrs.get("id") == "first-anomaly")
    assert opened < published < subscribed < acknowledged < first_bad
    assert "it reaches r0:" not in rows[published].text()
    assert rows[published].text().endswith("it reaches r0")
    [ack_arrow] = rows[acknowledged].find_all("arrow")
    assert (ack_arrow.attrs["data-from"], ack_arrow.attrs["data-to"]) == ("redis", "r1")
    assert not any("redis-log-read" in n.classes for n in rows)

    box = root.by_id("first-failure")
    assert box is not None
    words = " ".join(box.text().split())
    assert "no connection of r1, the replica of session s1, was subscribed" in words
    assert "SUBSCRIBE ran only after that publish" in words
    assert "acknowledgement arrived later still" in words
    assert "r1 never read stream s0's log" in words
    links = {n.attrs["href"] for n in box.walk() if "href" in n.attrs}
    assert {f"#{rows[published].attrs['id']}", f"#{rows[acknowledged].attrs['id']}"} <= links
    # The box comes before the diagram in the page.
    page = render_timeline(replay)
    assert page.index('id="first-failure"') < page.index('id="timeline"')


def test_the_correct_implementation_shows_its_catch_up_and_its_repair(tmp_path: Path) -> None:
    """The same decisions without the canary: no anomaly, and the rows show why. r1
    reads the log for s1 after its SUBSCRIBE was acknowledged and gets seq 0 back; r0
    repairs the dropped seq 1 from the log."""
    replay = json.loads(run_decisions(tmp_path / "run.json", frozenset()).read_text())
    assert replay["report"]["anomalies"] == []
    rows = rows_of(parse(render_timeline(replay)))
    texts = [" ".join(n.text().split()) for n in rows]
    acknowledged = next(i for i, t in enumerate(texts) if "acknowledgement of r1's SUBSCRIBE" in t)
    catch_up = next(i for i, t in enumerate(texts) if "catch-up: r1 reads" in t)
    assert acknowledged < catch_up
    assert "for session s1, which attached there; Redis returns seq 0" in texts[catch_up]
    dropped = next(i for i, t in enumerate(texts) if "loses the pub/sub message" in t)
    repair = next(i for i, t in enumerate(texts) if "repair: r0 reads" in t)
    assert dropped < repair and "Redis returns seqs 1\u20134" in texts[repair]


def test_rendering_is_deterministic_and_self_contained(
    replay_file: Path, replay: dict[str, Any], tmp_path: Path
) -> None:
    first = write_timeline(replay_file, tmp_path / "a" / "timeline.html")
    second = write_timeline(replay_file, tmp_path / "b.html")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text(encoding="utf-8") == render_timeline(replay)
    page = first.read_text(encoding="utf-8")
    for forbidden in ("<script", "<link", "<img", "<iframe", "src=", "url(", "http://", "https:"):
        assert forbidden not in page
    root = parse(page)
    hrefs = [n.attrs["href"] for n in root.walk() if "href" in n.attrs]
    assert hrefs and all(h.startswith("#") for h in hrefs)
    # The whole Redis trace is there, folded away.
    trace = root.by_id("redis-trace")
    assert trace is not None and trace.tag == "details"
    assert replay["redis_trace"][-1] in trace.text()
    # And it uses the package's style sheet.
    css = (Path(report.__file__).parent / "timeline.css").read_text(encoding="utf-8")
    assert css in page


def test_write_timeline_into_a_directory_uses_the_conventional_name(
    replay_file: Path, tmp_path: Path
) -> None:
    assert write_timeline(replay_file, tmp_path) == tmp_path / TIMELINE_FILENAME
    assert (tmp_path / TIMELINE_FILENAME).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# -- hand-made inputs: escaping, odd shapes, Redis faults --------------------------------------


def _opened(index: int, session: str, replica: str, time: float = 0.0) -> dict[str, Any]:
    return {
        "type": "SessionOpened",
        "index": index,
        "time": time,
        "session": session,
        "stream_id": "s0",
        "generation": "g1",
        "user_id": "u<1>",
        "owner_id": "u<1>",
        "replica": replica,
        "mode": "resume",
        "first_seq": 3,
        "snapshot_seqs": [0, 1, 2],
    }


def test_every_text_is_escaped() -> None:
    hostile = "<script>alert('x')</script> & \"quoted\""
    replay = {
        "name": hostile,
        "canaries": [hostile],
        "replicas": 1,
        "history": [
            _opened(0, "s1", "r0"),
            {
                "type": "Delivered",
                "index": 1,
                "time": 0.5,
                "session": "s1",
                "event": {"type": "Failure", "seq": 3, "generation": "g1", "message": hostile},
            },
        ],
        "report": {
            "ok": False,
            "anomalies": [
                {
                    "kind": "phantom",
                    "first_bad": 1,
                    "last_good": 0,
                    "session": "s1",
                    "explanation": hostile,
                }
            ],
        },
        "redis_trace": [f"0.000 #1 exec r0.1/c0 GET {hostile} -> nil"],
        "redis_records": [
            {
                "type": "MessageDropped",
                "time": 0.2,
                "position": 1,
                "connection": "r0.1/s0",
                "client": "r0.1",
                "channel": hostile,
                "message": hostile,
            },
            {"type": "NotARecord", "time": hostile},
        ],
        "settings": {"note": hostile},
        "minimized": {
            "from_decisions": 9,
            "replays": 12,
            "out_of_time": True,
            "kept_anomaly": hostile,
        },
    }
    page = render_timeline(replay)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    root = parse(page)
    first = root.by_id("first-anomaly")
    assert first is not None and hostile in first.text()
    # An unknown top-level key is shown, not dropped; an unreadable record is counted.
    summary = root.by_id("summary")
    assert summary is not None and "settings" in summary.text()
    assert "1 Redis record of this file could not be read" in summary.text()
    [drop] = root.find_all("redis-drop")
    assert hostile in drop.text()
    # The minimizer's summary is a sentence, not its JSON.
    assert (
        "The minimizer cut the decision list from 9 decisions to 0 in 12 replays, keeping "
        f"the first anomaly's class ({hostile}); it ran out of time" in summary.text()
    )
    assert "from_decisions" not in page


def test_a_clean_report_has_no_highlight_and_odd_records_do_not_break_the_page() -> None:
    replay = {
        "history": [
            _opened(0, "s1", "r1"),
            {"type": "SomethingNew", "index": 1, "time": 1.0, "weird": [1, 2]},
            {"type": "Delivered", "index": 2, "time": 1.0, "session": "s9", "event": None},
            {"type": "GeneratorStopped", "index": 3, "time": 2.0, "generation": "gX"},
            {"type": "Healed", "index": 4, "time": 100.0},
        ],
        "report": {"ok": True, "anomalies": []},
    }
    root = parse(render_timeline(replay))
    assert root.find_all("anomalous") == [] and root.by_id("first-anomaly") is None
    box = root.by_id("first-failure")
    assert box is not None and "ok" in box.classes
    assert [n.attrs["data-lane"] for n in root.find_all("lane-head")] == ["s1", "s9", "r1", "redis"]
    # A delivery to a session with no SessionOpened has no source: a mark, not an arrow.
    assert root.find_all("arrow") == []
    assert len(root.find_all("record")) == 5
    summary = root.by_id("summary")
    assert summary is not None and "verdict: ok" in summary.text()


def _closed(time: float, connection: str, reason: str, **lists: list[int]) -> dict[str, Any]:
    return {"type": "ConnectionClosed", "time": time, "connection": connection,
            "client": connection.split("/")[0], "reason": reason,
            "fault": reason != "closed by the client", **lists}  # fmt: skip


def test_redis_faults_are_placed_by_time_and_a_failover_folds_its_closes() -> None:
    replay = {
        "replicas": 2,
        "history": [
            {"type": "GenerationStarted", "index": 0, "time": 0.0, "generation": "g1",
             "replica": "r0", "stream_id": "s0", "user_id": "u", "start_seq": 0},
            {"type": "Healed", "index": 1, "time": 5.0},
        ],
        "report": {"ok": True, "anomalies": []},
        "redis_records": [
            {"type": "ConnectionOpened", "time": 0.0, "connection": "r0.1/s0", "client": "r0.1",
             "pubsub": True},
            {"type": "FailedOver", "time": 2.0, "writes_lost": 2},
            _closed(2.0, "r0.1/s0", "dropped by failover", lost=[7, 8]),
            _closed(2.0, "r0.1/c0", "dropped by failover", failed=[9]),
            _closed(3.0, "r0.1/s1", "disconnected"),
            _closed(3.5, "r0.1/c1", "closed by the client"),
            {"type": "LogRead", "time": 4.0, "item": 11, "connection": "r1.1/c0",
             "client": "r1.1", "key": "stream:{s0}:chunks", "start": "3-1", "end": "+",
             "count": 500, "ids": ["3-1", "4-1", "5-1"]},
            {"type": "MessageDropped", "time": 9.0, "item": 12, "connection": "r1.1/s0",
             "client": "r1.1", "channel": "stream:{s0}:events",
             "message": '{"type":"done","seq":4,"generationId":"g1"}'},
        ],
    }  # fmt: skip
    root = parse(render_timeline(replay))
    rows = rows_of(root)
    kinds = [
        "record"
        if "record" in n.classes
        else next(c for c in n.classes if c.startswith("redis-") and c != "redis-row")
        for n in rows
    ]
    assert kinds == ["record", "redis-failover", "redis-close", "redis-log-read", "record",
                     "redis-drop"]  # fmt: skip
    failover = rows[1].text()
    assert "2 unreplicated writes lost" in failover
    assert "r0.1/s0, r0.1/c0" in failover and "2 pub/sub messages in flight are lost" in failover
    assert "r0.1/s1 is disconnected: 0 commands failed" in rows[2].text()
    assert "r1 reads stream s0's log from seq 3; Redis returns seqs 3\u20135" in rows[3].text()
    [read] = rows[3].find_all("arrow")
    assert (read.attrs["data-from"], read.attrs["data-to"]) == ("r1", "redis")
    assert "done seq 4 of g1" in rows[5].text()
    # Every replica of the run has a lane, r1 too (no history record names it).
    assert [n.attrs["data-lane"] for n in root.find_all("lane-head")] == ["r0", "r1", "redis"]


def _mechanism_replay(kind: str) -> dict[str, Any]:
    message = '{"type":"chunk","seq":0,"generationId":"g1"}'
    where = {"position": 1, "connection": "r1.1/s0", "client": "r1.1"}
    return {
        "replicas": 2,
        "history": [
            _opened(0, "s1", "r1") | {"first_seq": 0, "snapshot_seqs": []},
            {"type": "Delivered", "index": 1, "time": 0.5, "session": "s1",
             "event": {"type": "Chunk", "seq": 1, "generation": "g1"}},
        ],
        "report": {"ok": False, "anomalies": [
            {"kind": kind, "first_bad": 1, "last_good": 0, "session": "s1",
             "stream_id": "s0", "generation": "g1", "seq": 0, "explanation": "it went wrong"},
        ]},
        "redis_records": [
            {"type": "CommandExecuted", "time": 0.1, "item": 1, "position": 1,
             "connection": "r0.1/c0", "client": "r0.1", "command": "EVALSHA",
             "script": "publish", "description": "EVALSHA publish ...", "reply": "[0, 0]",
             "published": [{"channel": "stream:{s0}:events", "message": message,
                            "receivers": ["r1.1/s0"]}]},
            {"type": "MessageDropped", "time": 0.2, "item": 2, "channel": "stream:{s0}:events",
             "message": message, **where},
            {"type": "LogRead", "time": 0.3, "item": 3, "position": 1, "connection": "r1.1/c0",
             "client": "r1.1", "key": "stream:{s0}:chunks", "start": "1-1", "end": "+",
             "ids": ["1-1"]},
        ],
    }  # fmt: skip


def test_the_mechanism_of_a_dropped_message_and_of_another_kind() -> None:
    missed = layout_timeline(_mechanism_replay("skipped_without_gap"))
    assert [sentence for sentence, _row in missed.mechanism] == [
        "Seq 0 was published to r1, and Redis dropped the message on the way (at-most-once "
        "pub/sub).",
        "r1 read the log afterwards (1 read), but none returned seq 0.",
        "The checker's first evidence is record 1.",
    ]
    assert [row for _sentence, row in missed.mechanism] == ["redis-1", "redis-2", "first-anomaly"]
    # A kind that is not about a missed seq gets the fact, not an inference.
    other = layout_timeline(_mechanism_replay("duplicate"))
    assert other.mechanism == (("Seq 0 of g1 was published live to r1.", "redis-0"),)


# -- in a real browser --------------------------------------------------------------------

#: Appended to a copy of the page (the page itself has no script): reads the layout
#: chromium computed and leaves it in the DOM as JSON for --dump-dom to print.
LAYOUT_PROBE = """
<script>
(function () {
  function box(el) {
    if (!el) return null;
    var r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, width: r.width, height: r.height};
  }
  var lanes = {};
  document.querySelectorAll(".lane-head").forEach(function (el) {
    lanes[el.dataset.lane] = box(el);
  });
  var arrows = [];
  document.querySelectorAll(".arrow").forEach(function (el) {
    arrows.push({from: el.dataset.from, to: el.dataset.to,
                 line: box(el.querySelector(".line")), label: box(el.querySelector(".label"))});
  });
  var first = document.getElementById("first-anomaly");
  var summary = document.getElementById("first-failure");
  var probe = document.createElement("pre");
  probe.id = "layout-probe";
  probe.textContent = JSON.stringify({
    lanes: lanes,
    arrows: arrows,
    first: first && {box: box(first), background: getComputedStyle(first).backgroundColor,
                     explanation: box(first.querySelector(".explanation"))},
    summary: box(summary),
    viewport: window.innerHeight
  });
  document.body.appendChild(probe);
})();
</script>
"""


def chromium_dump_dom(chromium: str, page: Path, profile: Path) -> str:
    """``chromium --headless --dump-dom``: the DOM after the page loaded, as HTML."""
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # the tests may run as root, where the sandbox refuses to start
        f"--user-data-dir={profile}",  # never the user's profile, never a shared lock
        "--window-size=1600,1200",
        "--dump-dom",
        page.as_uri(),
    ]
    # A session of its own, so that a hung browser and its helpers go with one signal.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s")
    assert process.returncode == 0, err[-2000:]
    assert "</html>" in out, err[-2000:]
    return out


def find_chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    return chromium


def test_chromium_renders_the_lanes_and_the_highlighted_anomaly(
    replay_file: Path, replay: dict[str, Any], tmp_path: Path
) -> None:
    chromium = find_chromium()
    page = write_timeline(replay_file, tmp_path / TIMELINE_FILENAME)

    # The page as chromium parsed it carries the same facts as the HTML text.
    check_page(parse(chromium_dump_dom(chromium, page, tmp_path / "profile")), replay)

    # And chromium lays it out as a sequence diagram.
    probed = tmp_path / "probed.html"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE + "</body>"),
        encoding="utf-8",
    )
    probe = parse(chromium_dump_dom(chromium, probed, tmp_path / "profile")).by_id("layout-probe")
    assert probe is not None
    layout = json.loads(probe.text())

    lanes = layout["lanes"]
    order = expected_lanes(replay)
    assert list(lanes) == order
    lefts = [lanes[name]["left"] for name in order]
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
    assert all(lanes[name]["width"] > 40 and lanes[name]["height"] > 0 for name in order)

    def centre(lane: str) -> float:
        box = lanes[lane]
        return float(box["left"] + box["width"] / 2)

    arrows = layout["arrows"]
    assert len(arrows) == len(parse(page.read_text(encoding="utf-8")).find_all("arrow"))
    assert len(arrows) > len(
        [r for r in replay["history"] if r["type"] in ("Emitted", "Delivered")]
    )  # the SUBSCRIBE and acknowledgement arrows too
    for arrow in arrows:
        line = arrow["line"]
        ends = sorted([centre(arrow["from"]), centre(arrow["to"])])
        assert line["width"] > 0 and arrow["label"]["height"] > 0
        assert abs(line["left"] - ends[0]) <= 2 and abs(line["right"] - ends[1]) <= 2, arrow

    first = layout["first"]
    assert first is not None
    assert first["box"]["width"] > 0 and first["box"]["height"] > 0
    assert first["background"] == "rgb(255, 227, 224)"  # the highlight colour, --bad-bg
    assert first["explanation"]["height"] > 0

    # The summary box, with the first anomaly and its link, is on the first screen.
    summary = layout["summary"]
    assert summary is not None and summary["height"] > 0
    assert summary["top"] >= 0 and summary["top"] + summary["height"] <= layout["viewport"]
