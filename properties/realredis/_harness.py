"""The real-Redis tier: the workload and checker against redis-server with faults.

One *run* starts its own Redis (a server, or a 3-master cluster with a replica each)
on free loopback ports, one agent process per replica (each behind a
:class:`FaultProxy` on a single server), gives every agent its part of a seeded plan,
injects one kind of fault while the workload runs, waits for the agents to heal and
exit, merges their histories and judges the result with the model's checker. Every
server and process is stopped by pid, also when a run fails; every wait is bounded.

Figures per fault kind: runs, events delivered, faults injected, anomalies by class,
abort latency (the abort's call to the generator's stop) and resume latency (the
resume call to its snapshot), p50 and p99.
"""

from __future__ import annotations

import enum
import json
import math
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from streamcheck.model import (
    CheckReport,
    Delivered,
    GeneratorStopped,
    Healed,
    History,
    SessionMode,
    SessionOpened,
    check,
)
from streamcheck.properties._replay import record_to_json
from streamcheck.properties.protocol import (
    PROTOCOL_VERSION,
    PYTHON_AGENT,
    Action,
    Agent,
    AgentFailed,
    Hello,
    Init,
    Op,
    ProtocolError,
    Storage,
    Transcript,
    finish_plan,
    read_hello,
    read_transcript,
    spawn_agent,
    start_plan,
    stop_agents,
)
from streamcheck.properties.realredis._merge import merge_histories
from streamcheck.properties.realredis._plan import Kill, Workload, draw_plans, save_plans
from streamcheck.properties.realredis._proxy import Blackhole, Cut, FaultProxy, Latency, SlowReader
from streamcheck.properties.realredis._servers import (
    OwnServer,
    RedisClusterServers,
    RedisServer,
    resp_call,
)

#: Timings for real runs: LibreChat's protocol constants, liveness bounds short enough
#: that a run ends in seconds (a producer is judged lost after 3 s of silence).
REAL_SETTINGS = {
    "reorder_timeout_s": 0.5,
    "idle_probe_s": 1.0,
    "producer_timeout_s": 3.0,
    "heartbeat_interval_s": 0.5,
    "cleanup_interval_s": 30.0,
}

#: How long past its heal window a run waits for an implementation still carrying out its
#: plan. The Durable Streams file store, which syncs every append to disk, answered a plan
#: of 1.75 s about 40 s late on the loaded two-core development machine.
PLAN_LATE_LIMIT_S = 120.0


class FaultKind(enum.StrEnum):
    NONE = "none"
    LATENCY = "latency"
    CUT = "connection-cut"
    BLACKHOLE = "blackhole"
    SLOW_READER = "slow-reader"
    PUBSUB_KILL = "client-kill-pubsub"
    PAUSE = "redis-pause"
    RESTART = "redis-restart-aof"
    REPLICA_KILL = "replica-sigkill"
    CLUSTER_FAILOVER = "cluster-failover"
    SLOT_MIGRATION = "slot-migration"


class Backend(enum.StrEnum):
    REDIS = "redis"
    CLUSTER = "cluster"


#: The faults of an implementation with its own server (see :func:`applicable_faults`).
OWN_SERVER_FAULTS: tuple[FaultKind, ...] = (
    FaultKind.NONE,
    FaultKind.LATENCY,
    FaultKind.CUT,
    FaultKind.BLACKHOLE,
    FaultKind.SLOW_READER,
    FaultKind.PAUSE,
    FaultKind.RESTART,
    FaultKind.REPLICA_KILL,
)

FAULTS: dict[Backend, tuple[FaultKind, ...]] = {
    Backend.REDIS: (
        FaultKind.NONE,
        FaultKind.LATENCY,
        FaultKind.CUT,
        FaultKind.BLACKHOLE,
        FaultKind.SLOW_READER,
        FaultKind.PUBSUB_KILL,
        FaultKind.PAUSE,
        FaultKind.RESTART,
        FaultKind.REPLICA_KILL,
    ),
    # The proxy faults need one upstream; a cluster client talks to every node.
    Backend.CLUSTER: (
        FaultKind.NONE,
        FaultKind.PUBSUB_KILL,
        FaultKind.REPLICA_KILL,
        FaultKind.CLUSTER_FAILOVER,
        FaultKind.SLOT_MIGRATION,
    ),
}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    runs_per_fault: int
    workload: Workload
    #: Seconds every agent keeps serving after the workload (past every timeout).
    heal_s: float


PROFILES: dict[str, Profile] = {
    "short": Profile(
        "short",
        runs_per_fault=1,
        workload=Workload(replicas=3, streams=4, chunks=25, chunk_interval_s=0.03, duration_s=2.5),
        heal_s=5.0,
    ),
    "soak": Profile(
        "soak",
        runs_per_fault=3,
        workload=Workload(
            replicas=3, streams=12, chunks=120, chunk_interval_s=0.02, duration_s=6.0
        ),
        heal_s=6.0,
    ),
}


@dataclass(slots=True)
class RunResult:
    fault: FaultKind
    seed: int
    report: CheckReport
    events: int
    faults_injected: int
    abort_latencies_s: list[float]
    resume_latencies_s: list[float]
    seconds: float
    #: Agents that exited with an error or overran (their stderr tail).
    agent_failures: list[str] = field(default_factory=list)
    #: Where a failing run's files were kept, if they were.
    kept: Path | None = None
    #: The implementation's name and version, from its agents' hello.
    implementation: str = ""
    #: The promises it does not make (judged as not made, listed in the report).
    not_exercised: list[str] = field(default_factory=list)
    #: How much later than planned the heal window ended: as late as the plan's last
    #: action was answered, or when the harness stopped waiting for it (see :func:`_heal`).
    plan_late_s: float = 0.0


#: A single server behind the proxies: Redis, or an implementation's own.
Upstream = RedisServer | OwnServer


@dataclass(frozen=True, slots=True)
class _Topology:
    """What the fault injector may act on."""

    server: Upstream | None
    cluster: RedisClusterServers | None
    proxies: list[FaultProxy]
    agents: list[trio.Process]


async def run_once(
    backend: Backend,
    fault: FaultKind,
    profile: Profile,
    seed: int,
    workdir: Path,
    *,
    commands: Sequence[list[str]] = (),
    plans: list[list[Action]] | None = None,
) -> RunResult:
    """One run: servers, agents, the fault, the merged history and its verdict. Replica
    ``i`` runs ``commands[i % len(commands)]`` (several commands make a mixed run of
    implementations sharing the streams); streamcheck's own agent if there are none.

    The plan is drawn from the seed for the promises every agent's hello makes (or is
    ``plans``, saved by an earlier run); an implementation with its own server has it
    started from its hello, behind the fault proxies, instead of Redis."""
    chosen = list(commands) or [list(PYTHON_AGENT)]
    started = time.monotonic()
    rng = random.Random(f"{backend}-{fault}-{seed}")
    workload = profile.workload
    replicas = len(plans) if plans is not None else workload.replicas
    kill = (
        Kill(replica=1, at=workload.duration_s * 0.4) if fault is FaultKind.REPLICA_KILL else None
    )
    end, heal = workload.duration_s, profile.heal_s
    agents: list[Agent] = []
    failures: list[str] = []
    killed_at = math.inf
    injected = 0
    start_at = math.inf
    healed_at = math.inf
    own_server: tuple[str, ...] | None = None
    with ExitStack() as stack:
        async with trio.open_nursery() as nursery:
            proxies: list[FaultProxy] = []
            try:
                for i in range(replicas):
                    command = chosen[i % len(chosen)]
                    agents.append(await spawn_agent(nursery, command, f"r{i}", workdir))
                hellos = [agent.hello for agent in agents if agent.hello is not None]
                own_server = _own_server(hellos)
                if fault not in applicable_faults(backend, own_server is not None):
                    raise AgentFailed(f"the fault {fault} does not apply to {_storage(hellos)}")
                drawn = draw_plans(
                    workload,
                    rng,
                    kill=kill,
                    finish_at=(end, end + heal / 4, end + heal / 2),
                    aborts=all(h.capabilities.abort for h in hellos),
                    errors=all(h.capabilities.error_terminals for h in hellos),
                )
                # A saved plan replaces the drawn one; drawing it anyway leaves the seed's
                # random choices of the faults (which proxy is cut) as they were.
                plans = plans if plans is not None else drawn
                save_plans(plans, workdir / "plans.json")
                server, cluster = stack.enter_context(
                    _servers(
                        backend, aof=fault is FaultKind.RESTART, own=own_server, workdir=workdir
                    )
                )
                if server is not None:
                    for i in range(replicas):
                        proxy = FaultProxy(server.port, rng=random.Random(f"{seed}-proxy-{i}"))
                        await nursery.start(proxy.run)
                        proxies.append(proxy)
                for i, (agent, actions) in enumerate(zip(agents, plans, strict=True)):
                    await agent.send(
                        _init(
                            f"r{i}",
                            agent.hello,
                            actions,
                            backend,
                            server,
                            cluster,
                            proxies[i] if proxies else None,
                        )
                    )
                start_at = await start_plan(agents)
                topology = _Topology(server, cluster, proxies, [a.process for a in agents])
                injected, killed_at = await _inject(fault, topology, start_at, workload, rng)
                victim = agents[kill.replica].name if kill is not None else None
                healed_at = await _heal(
                    [(a, p) for a, p in zip(agents, plans, strict=True) if a.name != victim],
                    start_at,
                    start_at + workload.duration_s + profile.heal_s,
                    profile.heal_s,
                )
                failures += [
                    f
                    for f in await stop_agents(agents)
                    if victim is None or not f.startswith(f"agent {victim} ")
                ]
                for agent in agents:
                    code = agent.process.returncode
                    if code not in (0, None) and agent.name != victim:
                        failures.append(agent.explain("failed"))
            except AgentFailed as exc:
                failures.append(str(exc))
            finally:
                for agent in agents:
                    if agent.process.returncode is None:
                        agent.process.kill()
                for proxy in proxies:
                    proxy.close()
                nursery.cancel_scope.cancel()
    plans = plans or []
    actions_by_id = {a.id: a for actions in plans for a in actions}
    transcripts: list[Transcript] = []
    forgets_after = _storage_forgets_after(fault, own_server is not None, start_at, killed_at)
    for agent in agents:
        try:
            transcripts.append(
                read_transcript(
                    agent.transcript,
                    agent.name,
                    actions_by_id,
                    plan_start=start_at if math.isfinite(start_at) else None,
                    storage_forgets_after=forgets_after,
                )
            )
        except ProtocolError as exc:
            failures.append(f"agent {agent.name} broke the protocol: {exc}")
    for transcript in transcripts:
        failures += [f"agent {transcript.replica}: {e}" for e in transcript.agent_errors]
    history = merge_histories(
        [t.records for t in transcripts],
        killed_at={f"r{kill.replica}": killed_at} if kill is not None else None,
    )
    nominal_heal = start_at + workload.duration_s + profile.heal_s
    if not math.isfinite(healed_at):  # the run failed before its heal window ended
        healed_at = nominal_heal
    history.append(Healed(time=healed_at))
    report = check(history)
    if report.unknown_reason is not None:
        failures.append(f"the agents' history cannot be judged: {report.unknown_reason}")
    if not report.ok or failures:
        # Keep the evidence: the merged history and the checker's report beside the
        # agents' own files (the caller copies the work directory away).
        (workdir / "history.json").write_text(
            json.dumps([record_to_json(r) for r in history.records], indent=0)
        )
        (workdir / "report.txt").write_text(report.summary())
    return RunResult(
        fault=fault,
        seed=seed,
        report=report,
        events=sum(1 for r in history.records if isinstance(r, Delivered)),
        faults_injected=injected,
        abort_latencies_s=_abort_latencies(history, plans, start_at),
        resume_latencies_s=_resume_latencies(history, plans, start_at),
        seconds=time.monotonic() - started,
        agent_failures=failures,
        implementation=_implementation(transcripts),
        not_exercised=next(
            (t.hello.capabilities.not_exercised() for t in transcripts if t.hello is not None),
            [],
        ),
        plan_late_s=max(0.0, healed_at - nominal_heal) if math.isfinite(nominal_heal) else 0.0,
    )


async def _heal(
    planned: list[tuple[Agent, list[Action]]], start_at: float, heal_at: float, heal_s: float
) -> float:
    """Wait out the heal window, which ends at ``heal_at`` (monotonic) for a plan carried
    out on time; returns when it ended.

    A slow implementation (a server that syncs every write to disk, on a loaded machine)
    may answer its plan's actions seconds late: its turns' last chunks and terminals are
    then written after the planned heal, and judging liveness there would blame readers
    for terminals nobody had written yet. So the window ends as much later as the plan's
    last action was answered late: it always follows the plan's end by the planned margin.
    A call stuck for good does not delay it: :func:`finish_plan` gives up once no planned
    action has been answered for a heal window, and after :data:`PLAN_LATE_LIMIT_S`."""
    await trio.sleep_until(_trio_time(heal_at))
    carried_out = await finish_plan(
        [(agent, [a.id for a in actions]) for agent, actions in planned],
        quiet_s=heal_s,
        limit_s=PLAN_LATE_LIMIT_S,
    )
    if carried_out is None:
        return time.monotonic()
    planned_end = start_at + max((a.at for _, actions in planned for a in actions), default=0.0)
    late = max(0.0, carried_out - planned_end)
    await trio.sleep_until(_trio_time(heal_at + late))
    return heal_at + late


def _storage_forgets_after(
    fault: FaultKind, own_server: bool, start_at: float, killed_at: float
) -> float:
    """From when the run's fault may have made the storage forget a turn, so that
    "absent" and "finished" prove nothing: a restarted server of an implementation's
    own (Redis restarts with its append-only file), a cluster failover (acknowledged
    writes may be lost), or the generator's replica killed (its turns are reaped)."""
    if (fault is FaultKind.RESTART and own_server) or fault is FaultKind.CLUSTER_FAILOVER:
        return start_at
    if fault is FaultKind.REPLICA_KILL:
        return killed_at
    return math.inf


def _implementation(transcripts: list[Transcript]) -> str:
    hellos = {(t.hello.name, t.hello.version) for t in transcripts if t.hello is not None}
    return ", ".join(f"{name} {version}" for name, version in sorted(hellos)) or "unknown"


def applicable_faults(backend: Backend, own_server: bool) -> tuple[FaultKind, ...]:
    """The fault kinds a run can inject: an implementation with its own server gets the
    proxy faults between the agents and that server, the server frozen (SIGSTOP) or
    restarted, and SIGKILL of an agent; Redis's own faults do not touch it."""
    if not own_server:
        return FAULTS[backend]
    return OWN_SERVER_FAULTS if backend is Backend.REDIS else ()


def probe_faults(
    backend: Backend, commands: Sequence[list[str]]
) -> tuple[tuple[FaultKind, ...], bool]:
    """The fault kinds that apply to the implementations ``commands`` start (each is
    started once, outside any trio run, to read its hello), and whether they bring their
    own server. Raises :class:`AgentFailed` when an agent cannot say hello."""
    with tempfile.TemporaryDirectory(prefix="streamcheck-hello-") as tmp:
        hellos = [trio.run(read_hello, command, Path(tmp)) for command in commands]
    own_server = any(h.capabilities.storage is Storage.OWN for h in hellos)
    return applicable_faults(backend, own_server), own_server


def _own_server(hellos: list[Hello]) -> tuple[str, ...] | None:
    """The server command of an implementation with its own storage (every agent of a
    run must share it), or ``None`` for implementations that use the harness's Redis."""
    commands = {h.server_command for h in hellos if h.capabilities.storage is Storage.OWN}
    if not commands:
        return None
    if len(commands) > 1 or any(h.capabilities.storage is not Storage.OWN for h in hellos):
        raise AgentFailed(
            f"the agents of one run must share one storage: their hellos name {_storage(hellos)}"
        )
    return commands.pop()


def _storage(hellos: list[Hello]) -> str:
    named = sorted(
        {
            f"{h.name} with its own server {' '.join(h.server_command)!r}"
            if h.capabilities.storage is Storage.OWN
            else f"{h.name} on the harness's Redis"
            for h in hellos
        }
    )
    return "; ".join(named)


def _init(
    replica: str,
    hello: Hello | None,
    actions: list[Action],
    backend: Backend,
    server: Upstream | None,
    cluster: RedisClusterServers | None,
    proxy: FaultProxy | None,
) -> str:
    """The init line: Redis's URL (through the replica's proxy on a single server), or
    the implementation's own server's, which the proxy fronts the same way."""
    own = isinstance(server, OwnServer)
    if proxy is not None:
        url = f"{'http' if own else 'redis'}://127.0.0.1:{proxy.port}"
    else:
        assert cluster is not None
        url = cluster.url
    return Init(
        replica=replica,
        redis_url=None if own else url,
        server_url=url if own else None,
        cluster=backend is Backend.CLUSTER,
        mode="plan",
        actions=tuple(actions),
        settings=REAL_SETTINGS,
        # Answered in the version the agent's hello said it speaks.
        protocol=PROTOCOL_VERSION if hello is None else hello.protocol,
    ).to_line()


@contextmanager
def _servers(
    backend: Backend, *, aof: bool, own: tuple[str, ...] | None, workdir: Path
) -> Iterator[tuple[Upstream | None, RedisClusterServers | None]]:
    with ExitStack() as stack:
        if own is not None:
            yield stack.enter_context(OwnServer(own, workdir / "server.log")), None
        elif backend is Backend.REDIS:
            extra = ("--appendonly", "yes", "--appendfsync", "always") if aof else ()
            yield stack.enter_context(RedisServer(extra_args=extra)), None
        else:
            yield None, stack.enter_context(RedisClusterServers(masters=3, replicas_per_master=1))


async def _inject(
    fault: FaultKind,
    topology: _Topology,
    start_at: float,
    workload: Workload,
    rng: random.Random,
) -> tuple[int, float]:
    """Inject the run's fault on its schedule; returns (faults injected, kill time)."""

    async def at(seconds: float) -> None:
        await trio.sleep_until(_trio_time(start_at + seconds))

    duration = workload.duration_s
    injected = 0
    killed_at = math.inf
    proxies, server, cluster = topology.proxies, topology.server, topology.cluster
    match fault:
        case FaultKind.NONE:
            pass
        case FaultKind.LATENCY:
            await at(0.3)
            for proxy in proxies:
                proxy.inject(Latency(delay_s=0.01, jitter_s=0.02))
                injected += 1
            await at(duration - 0.3)
            for proxy in proxies:
                proxy.heal()
        case FaultKind.CUT:
            for moment in (duration * 0.3, duration * 0.6):
                await at(moment)
                victim = proxies[rng.randrange(len(proxies))]
                victim.inject(Cut(refuse_for_s=0.1))
                injected += 1
        case FaultKind.BLACKHOLE:
            await at(duration * 0.3)
            proxies[0].inject(Blackhole(duration_s=0.8))
            proxies[1].inject(Blackhole(duration_s=0.4))
            injected += 2
        case FaultKind.SLOW_READER:
            await at(0.3)
            for proxy in proxies:
                proxy.inject(SlowReader(bytes_per_s=20_000))
                injected += 1
            await at(duration - 0.3)
            for proxy in proxies:
                proxy.heal()
        case FaultKind.PUBSUB_KILL:
            for moment in (duration * 0.3, duration * 0.6):
                await at(moment)
                for port in _ports(server, cluster):
                    await trio.to_thread.run_sync(_kill_pubsub, port)
                injected += 1
        case FaultKind.PAUSE:
            assert server is not None
            await at(duration * 0.3)
            server.pause()
            await trio.sleep(rng.uniform(1.0, 3.0))
            server.resume()
            injected += 1
        case FaultKind.RESTART:
            assert server is not None
            await at(duration * 0.4)
            await trio.to_thread.run_sync(server.restart)
            injected += 1
        case FaultKind.REPLICA_KILL:
            await at(workload.duration_s * 0.4)
            victim_agent = topology.agents[1]
            victim_agent.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            injected += 1
        case FaultKind.CLUSTER_FAILOVER:
            assert cluster is not None
            await at(duration * 0.35)
            await trio.to_thread.run_sync(_cluster_failover, cluster, "s0")
            injected += 1
        case FaultKind.SLOT_MIGRATION:
            assert cluster is not None
            await at(duration * 0.35)
            await trio.to_thread.run_sync(_migrate_slot, cluster, "s1")
            injected += 1
    return injected, killed_at


def _trio_time(monotonic_at: float) -> float:
    """A ``time.monotonic()`` instant on trio's clock (which has its own offset)."""
    return trio.current_time() + (monotonic_at - time.monotonic())


def _ports(server: Upstream | None, cluster: RedisClusterServers | None) -> list[int]:
    return [server.port] if server is not None else cluster.ports if cluster is not None else []


def _kill_pubsub(port: int) -> None:
    resp_call(port, "CLIENT", "KILL", "TYPE", "pubsub")


def _owner_of(cluster: RedisClusterServers, stream: str) -> tuple[int, str]:
    """(port, node id) of the master that serves ``stream``'s slot."""
    slot = resp_call(cluster.ports[0], "CLUSTER", "KEYSLOT", f"{{{stream}}}")
    assert isinstance(slot, int)
    for line in _nodes(cluster.ports[0]):
        fields = line.split()
        if "master" not in fields[2]:
            continue
        for part in fields[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return int(fields[1].split(":")[1].split("@")[0]), fields[0]
    raise RuntimeError(f"no master serves the slot of {stream!r}")


def _nodes(port: int) -> list[str]:
    text = resp_call(port, "CLUSTER", "NODES")
    assert isinstance(text, str)
    return [line for line in text.splitlines() if line.strip()]


#: Manual failovers asked for before giving up, and how long each may take.
FAILOVER_ATTEMPTS = 3
FAILOVER_WAIT_S = 10.0


def _cluster_failover(cluster: RedisClusterServers, stream: str) -> None:
    """A manual failover of the master serving ``stream``: its replica takes over."""
    _, master_id = _owner_of(cluster, stream)
    replicas = [
        int(fields[1].split(":")[1].split("@")[0])
        for fields in (line.split() for line in _nodes(cluster.ports[0]))
        if fields[3] == master_id
    ]
    if not replicas:
        raise RuntimeError(f"the master of {stream!r} has no replica")
    port = replicas[0]
    # A manual failover that does not complete within Redis's own timeout is dropped
    # without a word (the command only starts it; seen on a loaded CI run): ask again.
    for attempt in range(1, FAILOVER_ATTEMPTS + 1):
        resp_call(port, "CLUSTER", "FAILOVER", timeout=5.0)
        try:
            _wait(
                lambda: "slave" in _role_flags(port, master_id),
                "the old master to step down",
                timeout=FAILOVER_WAIT_S,
            )
            return
        except RuntimeError:
            if attempt == FAILOVER_ATTEMPTS:
                raise


def _role_flags(port: int, node_id: str) -> str:
    for line in _nodes(port):
        fields = line.split()
        if fields[0] == node_id:
            return fields[2]
    return ""


def _migrate_slot(cluster: RedisClusterServers, stream: str) -> None:
    """Move ``stream``'s slot, keys and all, to another master while it streams."""
    source_port, source_id = _owner_of(cluster, stream)
    slot = resp_call(source_port, "CLUSTER", "KEYSLOT", f"{{{stream}}}")
    masters = [
        (int(f[1].split(":")[1].split("@")[0]), f[0])
        for f in (line.split() for line in _nodes(source_port))
        if "master" in f[2] and f[0] != source_id
    ]
    target_port, target_id = masters[0]
    resp_call(target_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    resp_call(source_port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    while True:
        keys = resp_call(source_port, "CLUSTER", "GETKEYSINSLOT", str(slot), "100")
        if not keys:
            break
        assert isinstance(keys, list)
        resp_call(
            source_port,
            "MIGRATE",
            "127.0.0.1",
            str(target_port),
            "",
            "0",
            "5000",
            "KEYS",
            *[str(k) for k in keys],
            timeout=10.0,
        )
    # The target first, then the source, then the other masters (replicas learn it).
    others = [port for port, _ in masters[1:]]
    for port in (target_port, source_port, *others):
        resp_call(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)


def _wait(check_ok: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check_ok():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _abort_latencies(history: History, plans: list[list[Action]], start_at: float) -> list[float]:
    stops: dict[str, list[float]] = {}
    for record in history.records:
        if isinstance(record, GeneratorStopped):
            stops.setdefault(record.stream_id, []).append(record.time)
    out: list[float] = []
    for actions in plans:
        for action in actions:
            if action.op is Op.ABORT:
                asked = start_at + action.at
                after = [t - asked for t in stops.get(action.stream, []) if t >= asked]
                if after:
                    out.append(min(after))
    return out


def _resume_latencies(history: History, plans: list[list[Action]], start_at: float) -> list[float]:
    asked: dict[tuple[str, str], list[float]] = {}
    for i, actions in enumerate(plans):
        for action in actions:
            if action.op is Op.RESUME:
                asked.setdefault((f"r{i}", action.stream), []).append(start_at + action.at)
    out: list[float] = []
    for record in history.records:
        if isinstance(record, SessionOpened) and record.mode is SessionMode.RESUME:
            key = (record.replica, record.stream_id)
            times = [t for t in asked.get(key, []) if t <= record.time]
            if times:
                out.append(record.time - max(times))
    return out


@dataclass(slots=True)
class FaultFigures:
    fault: FaultKind
    runs: int = 0
    events: int = 0
    faults_injected: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    abort_latencies_s: list[float] = field(default_factory=list)
    resume_latencies_s: list[float] = field(default_factory=list)
    agent_failures: list[str] = field(default_factory=list)
    failing_seeds: list[int] = field(default_factory=list)
    implementation: str = ""
    not_exercised: list[str] = field(default_factory=list)

    def add(self, run: RunResult) -> None:
        self.runs += 1
        self.implementation = self.implementation or run.implementation
        self.not_exercised = self.not_exercised or run.not_exercised
        self.events += run.events
        self.faults_injected += run.faults_injected
        for kind, count in run.report.by_kind().items():
            self.anomalies[kind.value] += count
        self.abort_latencies_s += run.abort_latencies_s
        self.resume_latencies_s += run.resume_latencies_s
        self.agent_failures += run.agent_failures
        if not run.report.ok or run.agent_failures:
            self.failing_seeds.append(run.seed)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def run_tier(
    backend: Backend,
    profile: Profile,
    *,
    seed: int,
    runs_per_fault: int | None = None,
    faults: tuple[FaultKind, ...] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    keep_failures: Path | None = None,
    commands: Sequence[list[str]] = (),
    plans: list[list[Action]] | None = None,
) -> list[FaultFigures]:
    """Every fault kind of ``backend``, ``runs_per_fault`` runs each (of ``plans`` if
    given, else of a plan drawn per run). A failing run's files (plans, agent histories
    and logs, merged history, report) are copied to
    ``keep_failures/<backend>-<fault>-seed<N>/``."""
    figures: list[FaultFigures] = []
    runs = runs_per_fault if runs_per_fault is not None else profile.runs_per_fault
    for fault in faults if faults is not None else FAULTS[backend]:
        totals = FaultFigures(fault)
        for n in range(runs):
            with tempfile.TemporaryDirectory(prefix=f"streamcheck-{fault}-") as tmp:
                result = await run_once(
                    backend, fault, profile, seed + n, Path(tmp), commands=commands, plans=plans
                )
                if keep_failures is not None and (not result.report.ok or result.agent_failures):
                    kept = keep_failures / f"{backend}-{fault}-seed{seed + n}"
                    shutil.copytree(tmp, kept, dirs_exist_ok=True)
                    result.kept = kept
            totals.add(result)
            if on_run is not None:
                on_run(result)
        figures.append(totals)
    return figures
