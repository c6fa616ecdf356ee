"""An agent's transcript (its stdout lines) as history records, for the checker.

The agent reports calls, answers and deliveries; the harness knows what it asked for
(every action by id, with its payload). Digests, owners and turn names are computed here,
not by the agent, so an agent in any language stays small and cannot get them wrong.

A transcript may end mid-line (the harness killed the agent while it wrote): that line
is dropped. A call the agent invoked and never answered becomes INDETERMINATE: it may
have taken effect. A refused call becomes a :class:`CallRefused` the checker judges
against the turn's state over the call, which needs the earliest each call can have
started: the agent's ``invoked`` line where it sent one, else the plan's time for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcheck.model import (
    AbortRequested,
    CallRefused,
    Chunk,
    Delivered,
    Done,
    EmitKind,
    Emitted,
    Failure,
    Gap,
    GapReason,
    GenerationStarted,
    GeneratorStopped,
    JSONValue,
    OpOutcome,
    Record,
    RefusalReason,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    StreamEvent,
    digest,
    event_digest,
)
from streamcheck.properties.protocol._identity import PlanIdentity
from streamcheck.properties.protocol._messages import (
    Action,
    Hello,
    Op,
    Outcome,
    ProtocolError,
    field_of,
    optional,
    parse_hello,
    parse_line,
)

_EMIT_KINDS = {Op.EMIT: EmitKind.CHUNK, Op.DONE: EmitKind.DONE, Op.ERROR: EmitKind.ERROR}
_OUTCOMES = {
    Outcome.OK: OpOutcome.OK,
    Outcome.REFUSED: OpOutcome.FAIL,
    Outcome.INDETERMINATE: OpOutcome.INDETERMINATE,
}

#: Plan mode: how much earlier than its planned time an agent may start an action
#: (timers of some runtimes fire up to a millisecond early).
PLAN_TIMER_SLACK_S = 0.01


@dataclass(slots=True)
class Transcript:
    replica: str
    hello: Hello | None = None
    records: list[Record] = field(default_factory=list)
    #: What the agent said went wrong on its side ("error" lines).
    agent_errors: list[str] = field(default_factory=list)


def payload_of(action: Action) -> JSONValue:
    return action.message if action.op is Op.ERROR else action.data


def read_transcript(
    path: Path,
    replica: str,
    actions: Mapping[str, Action],
    *,
    plan_start: float | None = None,
    storage_forgets_after: float = math.inf,
) -> Transcript:
    """The records of one agent's transcript. ``actions`` holds every action of the run
    by id (an agent answers only its own, but owners come from the turns' creates).
    ``plan_start`` is the plan's t=0 (plan mode); ``storage_forgets_after`` is when the
    run's faults may first have made the storage forget a turn (refusals answered
    after it are judged only for "denied")."""
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.split("\n")
    # A last line without its newline was cut by a kill.
    complete = [line for line in lines[:-1] if line.strip()]
    return _Reader(replica, actions, plan_start, storage_forgets_after).read(complete)


class _Reader:
    def __init__(
        self,
        replica: str,
        actions: Mapping[str, Action],
        plan_start: float | None,
        storage_forgets_after: float,
    ) -> None:
        self.out = Transcript(replica)
        self.actions = actions
        self.plan_start = plan_start
        self.storage_forgets_after = storage_forgets_after
        self.owners = {a.stream: a.user for a in actions.values() if a.op is Op.CREATE}
        #: The implementation's generation id for each of the harness's turns.
        self.generations: dict[str, str] = {}
        self.stream_of_turn = {a.turn: a.stream for a in actions.values() if a.op is Op.CREATE}
        #: Calls invoked and not answered yet, by action id.
        self.invoked: dict[str, float] = {}
        #: Every ``invoked`` line, kept after the answer.
        self.invoked_at: dict[str, float] = {}
        #: Without native seqs, identity comes from the harness's payloads.
        self.native = True
        self.identity = PlanIdentity(actions)
        self.session_turn: dict[str, str] = {}

    def read(self, lines: list[str]) -> Transcript:
        for number, line in enumerate(lines, start=1):
            where = f"{self.out.replica} line {number}"
            raw = parse_line(line, where)
            kind = raw["type"]
            if number == 1:
                self.out.hello = parse_hello(raw)
                self.native = self.out.hello.capabilities.seqs
            elif kind == "ready":
                pass
            elif kind == "invoked":
                action_id = self._action(raw, where).id
                at = field_of(raw, "t", (int, float), where)
                self.invoked[action_id] = self.invoked_at[action_id] = at
            elif kind == "result":
                self._result(raw, where)
            elif kind == "event":
                self.out.records += self._delivered(raw, where)
            elif kind == "closed":
                reason = field_of(raw, "reason", str, where)
                if reason not in ("terminal", "detached", "closed"):
                    raise ProtocolError(f"{where}: unknown close reason {reason!r}")
                self.out.records.append(
                    SessionClosed(
                        time=field_of(raw, "t", (int, float), where),
                        session=field_of(raw, "session", str, where),
                        reason=SessionEnd(reason),
                    )
                )
            elif kind == "stopped":
                turn = field_of(raw, "turn", str, where)
                self.out.records.append(
                    GeneratorStopped(
                        time=field_of(raw, "t", (int, float), where),
                        stream_id=self.stream_of_turn.get(turn, ""),
                        generation=self._reported_generation(raw, turn, where),
                        by_abort=optional(raw, "reason", str, where, "aborted") == "aborted",
                    )
                )
            elif kind == "error":
                self.out.agent_errors.append(str(raw.get("message", raw))[:500])
            else:
                raise ProtocolError(f"{where}: unknown line type {kind!r}")
        for action_id, at in self.invoked.items():
            action = self.actions[action_id]
            if action.op in _EMIT_KINDS:
                self._emitted(at, action, OpOutcome.INDETERMINATE, None)
        return self.out

    def _began(self, action: Action) -> float:
        """The earliest ``action`` can have started (-inf when nothing says)."""
        reported = self.invoked_at.get(action.id)
        if reported is not None:
            return reported
        if self.plan_start is None:
            return -math.inf
        return self.plan_start + action.at - PLAN_TIMER_SLACK_S

    def _action(self, raw: Mapping[str, Any], where: str) -> Action:
        action_id = field_of(raw, "action", str, where)
        action = self.actions.get(action_id)
        if action is None:
            raise ProtocolError(f"{where}: no action has the id {action_id!r}")
        return action

    def _result(self, raw: Mapping[str, Any], where: str) -> None:
        action = self._action(raw, where)
        self.invoked.pop(action.id, None)
        t = field_of(raw, "t", (int, float), where)
        try:
            outcome = Outcome(field_of(raw, "outcome", str, where))
        except ValueError:
            raise ProtocolError(f"{where}: unknown outcome {raw.get('outcome')!r}") from None
        if outcome is Outcome.REFUSED:
            self.out.records.append(self._refused(t, action, str(raw.get("reason", ""))))
        match action.op:
            case Op.CREATE:
                if outcome is Outcome.OK:
                    generation = self._reported_generation(raw, action.turn, where)
                    self.generations[action.turn] = generation
                    start = optional(raw, "start_seq", int, where, 0) if self.native else 0
                    self.out.records.append(
                        GenerationStarted(
                            time=t,
                            stream_id=action.stream,
                            generation=generation,
                            user_id=action.user,
                            replica=self.out.replica,
                            start_seq=start,
                            invoked=self._began(action),
                        )
                    )
            case Op.EMIT | Op.DONE | Op.ERROR:
                seq = None
                if outcome is Outcome.OK:
                    seq = (
                        optional(raw, "seq", int, where, None)
                        if self.native
                        else self.identity.emit_seq(action)
                    )
                self._emitted(t, action, _OUTCOMES[outcome], seq)
            case Op.ABORT:
                self._abort(t, action, outcome, raw, where)
            case Op.SUBSCRIBE | Op.RESUME:
                if outcome is Outcome.OK:
                    self.out.records.append(self._opened(t, action, raw, where))
            case Op.DETACH:
                pass

    def _refused(self, t: float, action: Action, word: str) -> CallRefused:
        try:
            reason = RefusalReason(word)
        except ValueError:
            reason = RefusalReason.OTHER
        if action.op is Op.DETACH:
            # "absent" names the agent's own session (already closed, or never opened
            # because its subscribe failed), not the stream: nothing to judge.
            reason = RefusalReason.OTHER
        is_emit = action.op in _EMIT_KINDS
        return CallRefused(
            time=t,
            invoked=self._began(action),
            stream_id=action.stream,
            generation=self.generations.get(action.turn) if is_emit else None,
            call=action.op.value,
            user_id=action.user or self.owners.get(action.stream, ""),
            replica=self.out.replica,
            reason=reason,
            word=word,
            storage_reliable=t < self.storage_forgets_after,
        )

    def _emitted(self, t: float, action: Action, outcome: OpOutcome, seq: int | None) -> None:
        generation = self.generations.get(action.turn)
        if generation is None:
            return  # its turn never started: nothing could have been published
        self._emit_record(
            t,
            action,
            generation,
            kind=_EMIT_KINDS[action.op],
            payload=payload_of(action),
            outcome=outcome,
            seq=seq,
        )

    def _emit_record(
        self,
        t: float,
        action: Action,
        generation: str,
        *,
        kind: EmitKind,
        payload: JSONValue,
        outcome: OpOutcome,
        seq: int | None,
        by_abort: bool = False,
    ) -> None:
        self.out.records.append(
            Emitted(
                time=t,
                stream_id=action.stream,
                generation=generation,
                replica=self.out.replica,
                kind=kind,
                payload_digest=digest(payload),
                outcome=outcome,
                seq=seq,
                by_abort=by_abort,
                invoked=self._began(action),
            )
        )

    def _abort(
        self, t: float, action: Action, outcome: Outcome, raw: Mapping[str, Any], where: str
    ) -> None:
        if outcome is Outcome.REFUSED:
            return
        aborted = outcome is Outcome.OK and field_of(raw, "aborted", bool, where)
        turn = self.identity.turn_of_stream.get(action.stream, "")
        generation = optional(raw, "generation", str, where, None) if self.native else turn or None
        seq = optional(raw, "seq", int, where, None) if self.native else self.identity.end_of(turn)
        if aborted and generation is not None:
            # The abort published the turn's terminal: an emit the checker can match.
            self._emit_record(
                t,
                action,
                generation,
                kind=EmitKind.DONE,
                payload=raw.get("data"),
                outcome=OpOutcome.OK,
                seq=seq,
                by_abort=True,
            )
        self.out.records.append(
            AbortRequested(
                time=t,
                stream_id=action.stream,
                generation=generation,
                replica=self.out.replica,
                user_id=action.user,
                acknowledged=aborted,
                outcome=_OUTCOMES[outcome],
                invoked=self._began(action),
            )
        )

    def _opened(
        self, t: float, action: Action, raw: Mapping[str, Any], where: str
    ) -> SessionOpened:
        snapshot = optional(raw, "snapshot", dict, where, {})
        if self.native:
            generation = field_of(raw, "generation", str, where)
            seqs = optional(snapshot, "seqs", list, f"{where}.snapshot", [])
            if not all(isinstance(s, int) and not isinstance(s, bool) for s in seqs):
                raise ProtocolError(f"{where}: snapshot.seqs must be a list of integers")
            first_seq = optional(raw, "first_seq", int, where, 0)
        else:
            generation = self.identity.turn_of_stream.get(action.stream, "")
            seqs = self.identity.snapshot_seqs(snapshot, f"{where}.snapshot")
            first_seq = max(seqs) + 1 if seqs else 0
        self.session_turn[action.session] = generation
        return SessionOpened(
            time=t,
            session=action.session,
            stream_id=action.stream,
            generation=generation,
            user_id=action.user,
            owner_id=self.owners.get(action.stream, action.user),
            replica=self.out.replica,
            mode=SessionMode.RESUME if action.op is Op.RESUME else SessionMode.SUBSCRIBE,
            first_seq=first_seq,
            snapshot_seqs=tuple(seqs),
        )

    def _delivered(self, raw: Mapping[str, Any], where: str) -> list[Delivered]:
        time = field_of(raw, "t", (int, float), where)
        session = field_of(raw, "session", str, where)
        reported = field_of(raw, "event", dict, where)
        events: Sequence[StreamEvent]
        if self.native:
            events = [_event(reported, f"{where}.event")]
        else:
            turn = self.session_turn.get(session, "")
            events = self.identity.events(reported, turn, f"{where}.event")
        return [
            Delivered(time=time, session=session, event=e, payload_digest=event_digest(e))
            for e in events
        ]

    def _reported_generation(self, raw: Mapping[str, Any], turn: str, where: str) -> str:
        """The implementation's id of ``turn`` where it has one; else the harness's."""
        if not self.native:
            return turn
        return str(optional(raw, "generation", str, where, self.generations.get(turn, turn)))


def _event(raw: Mapping[str, Any], where: str) -> StreamEvent:
    kind = field_of(raw, "kind", str, where)
    generation = field_of(raw, "generation", str, where)
    try:
        match kind:
            case "chunk":
                return Chunk(
                    seq=field_of(raw, "seq", int, where),
                    generation=generation,
                    data=raw.get("data"),
                )
            case "done":
                return Done(
                    seq=field_of(raw, "seq", int, where),
                    generation=generation,
                    data=raw.get("data"),
                )
            case "error":
                return Failure(
                    seq=field_of(raw, "seq", int, where),
                    generation=generation,
                    message=field_of(raw, "message", str, where),
                )
            case "gap":
                return Gap(
                    first_seq=field_of(raw, "first_seq", int, where),
                    last_seq=field_of(raw, "last_seq", int, where),
                    generation=generation,
                    reason=GapReason(field_of(raw, "reason", str, where)),
                )
    except ValueError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    raise ProtocolError(f"{where}: unknown event kind {kind!r}")
