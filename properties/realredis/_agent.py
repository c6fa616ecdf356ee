"""One replica process of the real-Redis tier: impl's manager, driven by a plan.

The harness starts one agent per replica (``python -m streamcheck.properties.realredis.agent
PLAN OUT``). An agent runs the same :class:`~streamcheck.properties._world.World` as the
simulation, with one replica, over a real Redis client, and performs its plan's
actions at their times: turns it produces, chunks, ends, aborts, clients that attach,
detach and resume. Every history record is written to ``OUT`` (one JSON line each)
the moment it exists, so a SIGKILL loses nothing that happened before it.

Record times come from ``time.monotonic()`` (trio runs on :class:`MonotonicClock`),
which every process on the machine shares, so the harness can merge the files into
one history in time order.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import trio

from streamcheck.impl import ReplicaSettings, SystemWallClock
from streamcheck.impl.redis import RedisLike, open_coredis
from streamcheck.model import Emitted, History, Record
from streamcheck.properties._replay import record_to_json
from streamcheck.properties._world import World

logger = logging.getLogger(__name__)

#: Timings for real runs: LibreChat's protocol constants, liveness bounds short enough
#: that a run ends in seconds (a producer is judged lost after 3 s of silence).
REAL_SETTINGS = ReplicaSettings(
    reorder_timeout_s=0.5,
    idle_probe_s=1.0,
    producer_timeout_s=3.0,
    heartbeat_interval_s=0.5,
    cleanup_interval_s=30.0,
)

#: How often the heal phase asks unfinished generators to end.
FINISH_RETRY_S = 0.1

#: What an action may ask for (each maps to one World operation).
OPS = frozenset({"create", "emit", "done", "error", "abort", "subscribe", "resume", "detach"})


@dataclass(frozen=True, slots=True)
class Action:
    #: Seconds after the run's start.
    at: float
    op: str
    stream: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown action {self.op!r}; expected one of {sorted(OPS)}")


@dataclass(frozen=True, slots=True)
class AgentPlan:
    replica: str
    #: Restarted agents count up, so generation ids never repeat.
    incarnation: int
    redis_url: str
    cluster: bool
    #: ``time.monotonic()`` at the run's t=0 (shared by every agent).
    start_at: float
    #: Seconds after the start when the workload ends: every turn is then finished.
    end_after: float
    #: Seconds the agent keeps serving after the end, so readers can finish.
    heal_for: float
    actions: tuple[Action, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AgentPlan:
        raw: dict[str, Any] = json.loads(text)
        actions = tuple(Action(**a) for a in raw.pop("actions"))
        return cls(**raw, actions=actions)


class MonotonicClock(trio.abc.Clock):
    """trio's clock as ``time.monotonic()``: one time line for every process here
    (trio's default clock adds a random offset per run)."""

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.monotonic()


class StreamedHistory(History):
    """A history that also writes each record to a file as soon as it is appended.

    Emits about to be sent are written too, as ``{"invoked": <Emitted record>}``
    lines: if the harness kills this process mid-emit, the merge turns the ones that
    never completed into INDETERMINATE emits (the event may have been published)."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__()
        self._out = out

    def append(self, record: Record) -> Record:
        indexed = super().append(record)
        self._write(record_to_json(indexed))
        return indexed

    def invoked(self, emit: Emitted) -> None:
        self._write({"invoked": record_to_json(emit)})

    def _write(self, line: dict[str, Any]) -> None:
        self._out.write(json.dumps(line, sort_keys=True) + "\n")
        self._out.flush()


class _OneClient:
    """The :class:`~streamcheck.properties._world.RedisSource` of an agent: its one client."""

    def __init__(self, client: RedisLike) -> None:
        self._client = client

    def client(self, name: str) -> RedisLike:
        return self._client

    def connections(self) -> list[str]:
        return []

    def disconnect(self, connection: str) -> None:
        raise NotImplementedError("an agent's process is killed by the harness instead")


async def run_agent(plan: AgentPlan, out: IO[str]) -> None:
    history = StreamedHistory(out)
    async with (
        open_coredis(plan.redis_url, cluster=plan.cluster) as client,
        trio.open_nursery() as nursery,
    ):
        world = World(
            _OneClient(client),
            nursery,
            replicas=1,
            settings=REAL_SETTINGS,
            wall_clock=SystemWallClock(),
            replica_names=[plan.replica],
            incarnation=plan.incarnation - 1,
            history=history,
            session_prefix=f"{plan.replica}.{plan.incarnation}-",
            on_emit_invoked=history.invoked,
        )
        await world.start_replica(0)
        for action in sorted(plan.actions, key=lambda a: a.at):
            await trio.sleep_until(plan.start_at + action.at)
            _perform(world, action)
        await trio.sleep_until(plan.start_at + plan.end_after)
        healed_at = plan.start_at + plan.end_after + plan.heal_for
        # A generator busy with an emit is skipped by finish_all: ask again until every
        # turn has ended (or the heal is half over).
        while trio.current_time() < healed_at - plan.heal_for / 2:
            world.finish_all()
            await trio.sleep(FINISH_RETRY_S)
        await trio.sleep_until(healed_at)
        nursery.cancel_scope.cancel()


def _perform(world: World, action: Action) -> None:
    match action.op:
        case "create":
            world.create(action.stream, 0)
        case "emit":
            world.emit(action.stream)
        case "done" | "error":
            world.finish(action.stream, error=action.op == "error")
        case "abort":
            world.abort(action.stream, 0)
        case "subscribe" | "resume":
            world.attach(action.stream, 0, resume=action.op == "resume")
        case "detach":
            # The client of this stream that attached here first leaves.
            open_sessions = [s for s in world.sessions if s.open]
            for i, session in enumerate(open_sessions):
                if session.stream_id == action.stream:
                    world.detach(i)
                    break


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m streamcheck.properties.realredis.agent PLAN.json OUT.jsonl",
            file=sys.stderr,
        )
        return 2
    plan = AgentPlan.from_json(Path(args[0]).read_text())
    logging.basicConfig(level=logging.WARNING, format=f"{plan.replica} %(levelname)s %(message)s")
    with Path(args[1]).open("a") as out:
        trio.run(run_agent, plan, out, clock=MonotonicClock())
    return 0
