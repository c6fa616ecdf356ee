"""Workload plans for the real-Redis tier: who does what, when, on which replica.

A plan is drawn from a seed, so a run can be repeated. Each stream gets a producer
replica, a paced run of chunks and an end (done, error, or an abort from some
replica); two clients per stream attach on random replicas, and one of them may
detach and resume elsewhere. If the run kills a replica, every client it served
resumes on the next replica shortly after.

The harness names everything: turns, sessions, and each event, whose payload carries
its id (``s0.t1#3``), so the checker can tell events apart in any implementation.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamcheck.model import JSONValue
from streamcheck.properties.protocol import Action, Op, ProtocolError
from streamcheck.properties.protocol._identity import marker
from streamcheck.properties.protocol._messages import parse_action


@dataclass(frozen=True, slots=True)
class Workload:
    replicas: int
    streams: int
    chunks: int
    chunk_interval_s: float
    #: Seconds from the start in which every turn is created and should end.
    duration_s: float


@dataclass(frozen=True, slots=True)
class Kill:
    replica: int
    at: float


def owner_of(stream: str) -> str:
    return f"user-{stream}"


def chunk_payload(turn: str, n: int) -> JSONValue:
    """The n-th chunk of ``turn``, shaped as LibreChat's text deltas, with its id; ``text``
    is what an implementation that streams text only sends for it."""
    text = marker(turn, n)
    return {
        "id": f"{turn}#{n}",
        "text": text,
        "event": "on_message_delta",
        "data": {"index": 0, "delta": {"content": [{"type": "text", "text": text}]}},
    }


def draw_plans(
    workload: Workload,
    rng: random.Random,
    *,
    kill: Kill | None = None,
    finish_at: Sequence[float] = (),
    aborts: bool = True,
    errors: bool = True,
) -> list[list[Action]]:
    """One action list per replica (index = replica number), each in time order.

    An implementation that makes no abort promise (``aborts``) or has no error terminal
    (``errors``) gets a done where the plan would end a turn otherwise: the same seed
    draws the same plan in every other respect.

    At each of ``finish_at`` (seconds, after the workload) every producer ends its turn
    with a done, in case its own end failed (Redis paused or restarted under it); an
    implementation refuses it for a turn that has ended, as it should."""
    ids = (f"a{n}" for n in itertools.count())
    plans: list[list[Action]] = [[] for _ in range(workload.replicas)]
    attached: list[tuple[int, str, float]] = []  # (replica, stream, when) of live clients
    sessions = itertools.count(1)

    def act(
        replica: int,
        at: float,
        op: Op,
        stream: str,
        *,
        turn: str = "",
        data: JSONValue = None,
        message: str = "",
        session: str = "",
    ) -> None:
        plans[replica].append(
            Action(
                id=next(ids),
                op=op,
                stream=stream,
                at=at,
                user=owner_of(stream),
                turn=turn,
                data=data,
                message=message,
                session=session,
            )
        )

    def attach(replica: int, at: float, op: Op, stream: str) -> str:
        session = f"c{next(sessions)}"
        act(replica, at, op, stream, session=session)
        return session

    spread = max(0.1, workload.duration_s * 0.3)
    for k in range(workload.streams):
        stream = f"s{k}"
        turn = f"{stream}.t1"
        producer = k % workload.replicas
        created = 0.05 + spread * k / max(1, workload.streams)
        act(producer, created, Op.CREATE, stream, turn=turn)
        t = created + 0.1
        for n in range(workload.chunks):
            act(producer, t, Op.EMIT, stream, turn=turn, data=chunk_payload(turn, n))
            t += workload.chunk_interval_s
        end = rng.random()
        if end < 0.15:
            aborter = rng.randrange(workload.replicas)
            at = created + 0.1 + rng.uniform(0.3, 0.8) * (t - created - 0.1)
            if aborts:
                act(aborter, at, Op.ABORT, stream)
            else:
                act(producer, t, Op.DONE, stream, turn=turn, data={"id": f"{turn}#done"})
        elif end < 0.3 and errors:
            act(producer, t, Op.ERROR, stream, turn=turn, message=f"{turn}#error")
        else:
            act(producer, t, Op.DONE, stream, turn=turn, data={"id": f"{turn}#done"})
        for n, at in enumerate(finish_at):
            act(producer, at, Op.DONE, stream, turn=turn, data={"id": f"{turn}#finish{n}"})
        first = rng.randrange(workload.replicas)
        when = created + rng.uniform(0.02, 0.4)
        attach(first, when, Op.SUBSCRIBE, stream)
        attached.append((first, stream, when))
        second = rng.randrange(workload.replicas)
        when = created + rng.uniform(0.2, 0.9)
        session = attach(second, when, Op.RESUME, stream)
        attached.append((second, stream, when))
        if rng.random() < 0.5:
            away = when + rng.uniform(0.1, 0.5)
            act(second, away, Op.DETACH, stream, session=session)
            back = (second + 1 + rng.randrange(workload.replicas - 1)) % workload.replicas
            attach(back, away + 0.1, Op.RESUME, stream)
    if kill is not None:
        survivor = (kill.replica + 1) % workload.replicas
        for replica, stream, when in attached:
            if replica == kill.replica and when < kill.at:
                attach(survivor, kill.at + 0.3, Op.RESUME, stream)
        plans[kill.replica] = [a for a in plans[kill.replica] if a.at < kill.at]
    for actions in plans:
        actions.sort(key=lambda a: a.at)
    return plans


def save_plans(plans: Sequence[Sequence[Action]], path: Path) -> None:
    """The plans of a run, one list per replica: what ``--plan`` runs again."""
    path.write_text(json.dumps([[a.to_json() for a in actions] for actions in plans], indent=1))


def load_plans(path: Path) -> list[list[Action]]:
    """Plans saved by :func:`save_plans`; a malformed file is a :class:`ProtocolError`."""
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ProtocolError(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, list) or not raw or not all(isinstance(p, list) for p in raw):
        raise ProtocolError(f"{path}: a plan file is a list of action lists, one per replica")
    return [
        [
            parse_action(a if isinstance(a, dict) else {}, f"{path} replica {i} action {n}")
            for n, a in enumerate(actions)
        ]
        for i, actions in enumerate(raw)
    ]
