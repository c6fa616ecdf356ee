"""Workload plans for the real-Redis tier: who does what, when, on which replica.

A plan is drawn from a seed, so a run can be repeated. Each stream gets a producer
replica, a paced run of chunks and an end (done, error, or an abort from some
replica); two clients per stream attach on random replicas, and one of them may
detach and resume elsewhere. If the run kills a replica, every client it served
resumes on the next replica shortly after.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from streamcheck.properties.realredis._agent import Action

#: Chunks a plan gives each stream: LLM answers are tens to hundreds of events.
DEFAULT_CHUNKS = 30


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


def draw_plans(
    workload: Workload, rng: random.Random, *, kill: Kill | None = None
) -> list[list[Action]]:
    """One action list per replica (index = replica number)."""
    plans: list[list[Action]] = [[] for _ in range(workload.replicas)]
    attached: list[tuple[int, str, float]] = []  # (replica, stream, when) of live clients
    spread = max(0.1, workload.duration_s * 0.3)
    for k in range(workload.streams):
        stream = f"s{k}"
        producer = k % workload.replicas
        created = 0.05 + spread * k / max(1, workload.streams)
        plans[producer].append(Action(at=created, op="create", stream=stream))
        t = created + 0.1
        for _ in range(workload.chunks):
            plans[producer].append(Action(at=t, op="emit", stream=stream))
            t += workload.chunk_interval_s
        end = rng.random()
        if end < 0.15:
            aborter = rng.randrange(workload.replicas)
            at = created + 0.1 + rng.uniform(0.3, 0.8) * (t - created - 0.1)
            plans[aborter].append(Action(at=at, op="abort", stream=stream))
        else:
            op = "error" if end < 0.3 else "done"
            plans[producer].append(Action(at=t, op=op, stream=stream))
        first = rng.randrange(workload.replicas)
        when = created + rng.uniform(0.02, 0.4)
        plans[first].append(Action(at=when, op="subscribe", stream=stream))
        attached.append((first, stream, when))
        second = rng.randrange(workload.replicas)
        when = created + rng.uniform(0.2, 0.9)
        plans[second].append(Action(at=when, op="resume", stream=stream))
        attached.append((second, stream, when))
        if rng.random() < 0.5:
            away = when + rng.uniform(0.1, 0.5)
            plans[second].append(Action(at=away, op="detach", stream=stream))
            back = (second + 1 + rng.randrange(workload.replicas - 1)) % workload.replicas
            plans[back].append(Action(at=away + 0.1, op="resume", stream=stream))
    if kill is not None:
        survivor = (kill.replica + 1) % workload.replicas
        for replica, stream, when in attached:
            if replica == kill.replica and when < kill.at:
                plans[survivor].append(Action(at=kill.at + 0.3, op="resume", stream=stream))
        plans[kill.replica] = [a for a in plans[kill.replica] if a.at < kill.at]
    for actions in plans:
        actions.sort(key=lambda a: a.at)
    return plans
