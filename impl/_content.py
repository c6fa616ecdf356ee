"""Folding chunk events into the message a client shows (LibreChat's content aggregator).

Accepted events (docs/design.md, resume): ``on_message_delta`` and ``on_reasoning_delta`` append
text to the content part at ``data.index``; ``on_run_step`` / ``on_run_step_completed``
are collected separately as run steps (upserted by ``id``). Anything else is ignored.
The functions are pure so that the same fold runs live, on resume and in the checker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streamcheck.model import JSONValue

TEXT_EVENTS = {"on_message_delta": "text", "on_reasoning_delta": "think"}
RUN_STEP_EVENTS = {"on_run_step", "on_run_step_completed", "on_run_step_delta"}


def _delta_text(data: Mapping[str, JSONValue]) -> str:
    delta = data.get("delta")
    if not isinstance(delta, Mapping):
        return ""
    content = delta.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    pieces: list[str] = []
    for part in content:
        if isinstance(part, Mapping):
            for key in ("text", "think"):
                value = part.get(key)
                if isinstance(value, str):
                    pieces.append(value)
    return "".join(pieces)


def aggregate_content(events: Iterable[JSONValue]) -> list[JSONValue]:
    """Content parts ``[{"type": "text", "text": ...}, ...]`` in index order."""
    parts: dict[int, dict[str, JSONValue]] = {}
    for event in events:
        if not isinstance(event, Mapping):
            continue
        part_type = TEXT_EVENTS.get(str(event.get("event")))
        data = event.get("data")
        if part_type is None or not isinstance(data, Mapping):
            continue
        index = data.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            continue
        part = parts.setdefault(index, {"type": part_type, part_type: ""})
        previous = part.get(part_type)
        part[part_type] = (previous if isinstance(previous, str) else "") + _delta_text(data)
    return [parts[i] for i in sorted(parts)]


def collect_run_steps(events: Iterable[JSONValue]) -> list[JSONValue]:
    """Run steps in first-seen order, later events for the same ``id`` replacing earlier."""
    steps: dict[str, JSONValue] = {}
    for event in events:
        if not isinstance(event, Mapping) or event.get("event") not in RUN_STEP_EVENTS:
            continue
        data = event.get("data")
        if isinstance(data, Mapping) and isinstance(data.get("id"), str):
            step_id = data["id"]
            assert isinstance(step_id, str)
            steps[step_id] = data
    return list(steps.values())


def content_text(parts: Iterable[JSONValue]) -> str:
    """The plain text of content parts (reasoning excluded), for token counting."""
    return "".join(
        str(part.get("text", ""))
        for part in parts
        if isinstance(part, Mapping) and part.get("type") == "text"
    )
