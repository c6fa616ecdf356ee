"""Identity from the harness's own payloads, for implementations without native seqs.

The harness names every event it asks for: a chunk's payload carries ``"id": "s0.t1#4"``
and the text marker ``⟦s0.t1#4⟧``; a turn's done carries ``"id": "s0.t1#done"``; its
error message is ``s0.t1#error``. An implementation that hands its readers only the data
(or only the text, chunks run together) is judged by these: the n-th chunk of a turn is
seq n of that turn, its terminal comes after its last planned chunk. Anything a reader
receives that the harness never sent is given a seq of its own past the turn, so the
checker reports it (a phantom) instead of it vanishing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, Final

from streamcheck.model import Chunk, Done, Failure, JSONValue, SequencedEvent
from streamcheck.properties.protocol._messages import Action, Op, ProtocolError

#: Seqs given to payloads the harness never sent: far past any planned turn.
PHANTOM_SEQS: Final = 1_000_000_000
_MARKER = re.compile(r"⟦([^⟦⟧#]+)#(\d+)⟧")


def marker(turn: str, n: int) -> str:
    """The text a chunk carries for implementations that deliver text only."""
    return f"⟦{turn}#{n}⟧"


class PlanIdentity:
    """Positions of every planned event, by turn."""

    def __init__(self, actions: Mapping[str, Action]) -> None:
        emits: dict[str, list[Action]] = {}
        self.turn_of_stream: dict[str, str] = {}
        #: Each turn's first planned done payload: what an end without a payload stands for.
        self.done_payload: dict[str, JSONValue] = {}
        for action in sorted(actions.values(), key=lambda a: (a.at, a.id)):
            if action.op is Op.CREATE:
                self.turn_of_stream[action.stream] = action.turn
            elif action.op is Op.EMIT:
                emits.setdefault(action.turn, []).append(action)
            elif action.op is Op.DONE:
                self.done_payload.setdefault(action.turn, action.data)
        #: Seq of each planned chunk, by its action id; and each turn's terminal seq.
        self.chunk_seq = {a.id: n for turn in emits.values() for n, a in enumerate(turn)}
        self.terminal_seq = {turn: len(chunks) for turn, chunks in emits.items()}
        #: The payload of each planned chunk, by (turn, n).
        self.payloads: dict[tuple[str, int], JSONValue] = {
            (a.turn, n): a.data for turn in emits.values() for n, a in enumerate(turn)
        }
        self._phantoms = itertools.count(PHANTOM_SEQS)

    def emit_seq(self, action: Action) -> int:
        if action.op is Op.EMIT:
            return self.chunk_seq[action.id]
        return self.terminal_seq.get(action.turn, 0)

    def end_of(self, turn: str) -> int:
        return self.terminal_seq.get(turn, 0)

    def events(self, raw: Mapping[str, Any], turn: str, where: str) -> list[SequencedEvent]:
        """What one reported event (without seqs) stands for, in the session's ``turn``."""
        kind = raw.get("kind")
        match kind:
            case "text":
                text = raw.get("text")
                if not isinstance(text, str):
                    raise ProtocolError(f"{where}: field 'text' must be str")
                return self._from_text(text, turn)
            case "chunk":
                return [self._chunk(raw.get("data"), turn)]
            case "done":
                # A text stream's end carries no payload: it stands for the turn's done.
                data = raw["data"] if "data" in raw else self.done_payload.get(turn)
                return [Done(seq=self.end_of(_turn_in(data) or turn), generation=turn, data=data)]
            case "error":
                message = raw.get("message")
                if not isinstance(message, str):
                    raise ProtocolError(f"{where}: field 'message' must be str")
                return [Failure(seq=self.end_of(turn), generation=turn, message=message)]
        raise ProtocolError(
            f"{where}: an implementation without seqs reports chunk, text, done or error "
            f"events, not {kind!r}"
        )

    def _chunk(self, data: JSONValue, turn: str) -> Chunk:
        event_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(event_id, str):
            found = _MARKER.fullmatch(f"⟦{event_id}⟧")
            if found is not None:
                key = (found.group(1), int(found.group(2)))
                if self.payloads.get(key) == data:
                    return Chunk(seq=key[1], generation=key[0], data=data)
        return Chunk(seq=next(self._phantoms), generation=turn, data=data)

    def _from_text(self, text: str, turn: str) -> list[SequencedEvent]:
        events: list[SequencedEvent] = []
        position = 0
        for found in _MARKER.finditer(text):
            if found.start() > position:
                events.append(self._phantom_text(text[position : found.start()], turn))
            key = (found.group(1), int(found.group(2)))
            payload = self.payloads.get(key)
            if payload is None:
                events.append(self._phantom_text(found.group(0), turn))
            else:
                events.append(Chunk(seq=key[1], generation=key[0], data=payload))
            position = found.end()
        if position < len(text):
            events.append(self._phantom_text(text[position:], turn))
        return events

    def _phantom_text(self, text: str, turn: str) -> Chunk:
        return Chunk(seq=next(self._phantoms), generation=turn, data=text)

    def snapshot_seqs(self, snapshot: Mapping[str, Any], where: str) -> list[int]:
        """The chunk seqs a resume's snapshot folded, from its ids or its text."""
        text = snapshot.get("text")
        if text is None:
            return []
        if not isinstance(text, str):
            raise ProtocolError(f"{where}: snapshot.text must be str")
        return [int(found.group(2)) for found in _MARKER.finditer(text)]


def _turn_in(data: JSONValue) -> str | None:
    event_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(event_id, str) and "#" in event_id:
        return event_id.rsplit("#", 1)[0]
    return None
