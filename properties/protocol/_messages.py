"""The replica protocol's messages (version 2; ``docs/port-protocol.md`` is the contract).

An agent is a process that hosts one replica of an implementation under test. The harness
writes JSON lines to its stdin; the agent writes JSON lines to its stdout (anything for
humans goes to stderr). This module holds both directions as plain data, and parses what
an agent says into typed values: a line that breaks the contract is a
:class:`ProtocolError` naming the field, never a KeyError deep in the merge.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from streamcheck.model import JSONValue

#: The version this harness speaks; an agent says which one it speaks in its hello, and
#: the harness answers in that one (version 2 added the harness clock, ``clock_line``).
PROTOCOL_VERSION: Final = 2
SUPPORTED_PROTOCOLS: Final = frozenset({1, 2})


class ProtocolError(ValueError):
    """An agent's line (or the harness's, in tests) that breaks the protocol."""


class Op(enum.StrEnum):
    """What an action asks the replica to do."""

    CREATE = "create"  # start a turn on a stream (a generator on this replica)
    EMIT = "emit"  # the turn's generator emits one chunk
    DONE = "done"  # ... ends the turn normally
    ERROR = "error"  # ... ends it with an error
    ABORT = "abort"  # a user presses Stop on this replica
    SUBSCRIBE = "subscribe"  # a client attaches from the turn's start
    RESUME = "resume"  # a client attaches with a snapshot, then live
    DETACH = "detach"  # a client leaves


#: The ops a generator performs in order, one at a time, per stream.
GENERATOR_OPS: Final = frozenset({Op.EMIT, Op.DONE, Op.ERROR})
#: The ops that open a session.
ATTACH_OPS: Final = frozenset({Op.SUBSCRIBE, Op.RESUME})


class Outcome(enum.StrEnum):
    """How a call ended, as the implementation answered it."""

    OK = "ok"
    #: The implementation said no on purpose ("finished", "absent", "denied", ...).
    REFUSED = "refused"
    #: The implementation failed and cannot say whether the call took effect.
    INDETERMINATE = "indeterminate"


class ResumeBy(enum.StrEnum):
    SEQ = "seq"  # the snapshot names the seqs it folded; live continues after them
    OFFSET = "offset"  # the snapshot is text up to a character offset
    SNAPSHOT = "snapshot"  # an opaque snapshot, then live
    NONE = "none"  # no resume: a reconnecting client subscribes again


class Storage(enum.StrEnum):
    REDIS = "redis"  # the implementation uses the Redis the harness gives it
    OWN = "own"  # it brings its own server (the harness starts and may fault it)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The promises an implementation makes; the checker judges exactly these."""

    #: Events carry the implementation's own sequence numbers (shared by every replica).
    seqs: bool = True
    resume: ResumeBy = ResumeBy.SEQ
    #: An abort pressed on any replica stops the generator wherever it runs.
    abort: bool = True
    #: Loss that cannot be repaired is told to readers as a typed gap event.
    gap_events: bool = True
    #: An error ends a turn with an error terminal readers receive.
    error_terminals: bool = True
    #: A stream id may carry several turns, one after another.
    turns_per_stream: int | None = None
    storage: Storage = Storage.REDIS
    #: Not a promise but a way in (protocol 2): the replica's timers run on a clock the
    #: harness may move ahead (``clock`` lines), so the simulation's clock jumps cost no
    #: real time.
    harness_clock: bool = False

    def not_exercised(self) -> list[str]:
        """The promises this implementation does not make, in words, for reports."""
        missing = []
        if not self.seqs:
            missing.append("native seqs (identity comes from the harness's payload ids)")
        if self.resume is ResumeBy.NONE:
            missing.append("resume (clients subscribe again)")
        if not self.abort:
            missing.append("cross-replica abort")
        if not self.gap_events:
            missing.append("typed gap events")
        if not self.error_terminals:
            missing.append("error terminals")
        if self.turns_per_stream == 1:
            missing.append("several turns per stream id")
        return missing


@dataclass(frozen=True, slots=True)
class Hello:
    protocol: int
    name: str
    version: str
    capabilities: Capabilities
    #: ``storage: own``: the command that starts the implementation's server, with
    #: ``{port}`` (where it must listen on 127.0.0.1) and ``{dir}`` (its data directory,
    #: kept across restarts within a run) filled in by the harness.
    server_command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the harness asks of a replica; ``id`` names it in every answer."""

    id: str
    op: Op
    stream: str
    #: Seconds after the run's start (plan mode); ignored in interactive mode.
    at: float = 0.0
    user: str = ""
    #: CREATE: the harness's name for the turn.
    turn: str = ""
    #: EMIT and DONE: the payload to send (it carries the harness's event id).
    data: JSONValue = None
    #: ERROR: the message.
    message: str = ""
    #: SUBSCRIBE, RESUME and DETACH: the harness's name for the client's session.
    session: str = ""

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        return {k: v for k, v in raw.items() if v not in ("", None) or k in ("id", "op", "at")}


@dataclass(frozen=True, slots=True)
class Init:
    """The harness's first line to an agent."""

    replica: str
    #: ``None`` for an implementation with its own server (``storage: own``).
    redis_url: str | None
    cluster: bool
    #: ``plan``: perform ``actions`` at their times after ``start``; ``interactive``:
    #: perform each ``do`` line at once.
    mode: str
    actions: tuple[Action, ...] = ()
    #: Timeouts the replica should use, in seconds, where it has such settings.
    settings: Mapping[str, float] = field(default_factory=dict)
    #: Restarted agents count up, so an implementation's ids never repeat.
    incarnation: int = 1
    #: ``storage: own``: where the implementation's server answers (maybe a fault proxy).
    server_url: str | None = None
    #: The protocol version of this conversation: the one the agent's hello said.
    protocol: int = PROTOCOL_VERSION

    def to_line(self) -> str:
        redis = None if self.redis_url is None else {"url": self.redis_url, "cluster": self.cluster}
        server = None if self.server_url is None else {"url": self.server_url}
        return json.dumps(
            {
                "type": "init",
                "protocol": self.protocol,
                "replica": self.replica,
                "incarnation": self.incarnation,
                "redis": redis,
                "server": server,
                "mode": self.mode,
                "settings": dict(self.settings),
                "actions": [a.to_json() for a in self.actions],
            }
        )


def start_line(at: float) -> str:
    """Plan mode: t=0 of the plan is ``at`` on the machine's monotonic clock."""
    return json.dumps({"type": "start", "at": at})


def do_line(action: Action) -> str:
    return json.dumps({"type": "do", "action": action.to_json()})


STOP_LINE: Final = json.dumps({"type": "stop"})


def clock_line(advance_s: float) -> str:
    """Protocol 2, to an agent whose hello declared ``harness_clock``: move the
    replica's clock ``advance_s`` seconds ahead; timers due by then fire at once."""
    return json.dumps({"type": "clock", "advance": advance_s})


# -- parsing -------------------------------------------------------------------------------


def parse_line(text: str, where: str) -> dict[str, Any]:
    """One JSON object line with a string ``type``."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"{where}: not JSON ({exc}): {text[:120]!r}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: a line must be a JSON object: {text[:120]!r}")
    if not isinstance(raw.get("type"), str):
        raise ProtocolError(f"{where}: field 'type' must be a string")
    return raw


def field_of(raw: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(name)
    # bool is an int in Python; JSON keeps them apart, and so does the protocol.
    if (
        name not in raw
        or not isinstance(value, kind)
        or (isinstance(value, bool) and bool not in _kinds(kind))
    ):
        expected = " or ".join(k.__name__ for k in _kinds(kind))
        raise ProtocolError(f"{where}: field {name!r} must be {expected}, not {value!r}")
    return value


def optional(
    raw: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str, default: Any
) -> Any:
    return field_of(raw, name, kind, where) if raw.get(name) is not None else default


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _enum(cls: type[enum.StrEnum], value: str, where: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ProtocolError(f"{where}: {value!r} is not one of {known}") from None


def parse_hello(raw: Mapping[str, Any]) -> Hello:
    where = "hello"
    if raw.get("type") != "hello":
        raise ProtocolError(f"the first line must be a hello, not a {raw.get('type')!r}")
    protocol = _protocol(raw, where)
    implementation = field_of(raw, "implementation", dict, where)
    caps = field_of(raw, "capabilities", dict, where)
    w = f"{where}.capabilities"
    turns = optional(caps, "turns_per_stream", int, w, None)
    if turns is not None and turns < 1:
        raise ProtocolError(f"{w}: field 'turns_per_stream' must be 1 or more (or null)")
    storage = _enum(Storage, optional(caps, "storage", str, w, "redis"), f"{w}.storage")
    harness_clock = optional(caps, "harness_clock", bool, w, False)
    if harness_clock and protocol < 2:
        raise ProtocolError(f"{w}: 'harness_clock' needs protocol 2 (the hello says {protocol})")
    command: tuple[str, ...] = ()
    if storage is Storage.OWN:
        server = field_of(raw, "server", dict, where)
        words = field_of(server, "command", list, f"{where}.server")
        if not words or not all(isinstance(word, str) for word in words):
            raise ProtocolError(f"{where}.server: 'command' must be a non-empty list of strings")
        command = tuple(words)
    return Hello(
        protocol=protocol,
        name=field_of(implementation, "name", str, f"{where}.implementation"),
        version=field_of(implementation, "version", str, f"{where}.implementation"),
        capabilities=Capabilities(
            seqs=field_of(caps, "seqs", bool, w),
            resume=_enum(ResumeBy, field_of(caps, "resume", str, w), f"{w}.resume"),
            abort=field_of(caps, "abort", bool, w),
            gap_events=field_of(caps, "gap_events", bool, w),
            error_terminals=field_of(caps, "error_terminals", bool, w),
            turns_per_stream=turns,
            storage=storage,
            harness_clock=harness_clock,
        ),
        server_command=command,
    )


def _protocol(raw: Mapping[str, Any], where: str) -> int:
    protocol: int = field_of(raw, "protocol", int, where)
    if protocol not in SUPPORTED_PROTOCOLS:
        raise ProtocolError(
            f"{where}: protocol version {protocol} is not supported (this harness speaks "
            f"{', '.join(map(str, sorted(SUPPORTED_PROTOCOLS)))})"
        )
    return protocol


def hello_line(name: str, version: str, capabilities: Capabilities) -> str:
    caps = asdict(capabilities)
    return json.dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "implementation": {"name": name, "version": version},
            "capabilities": {
                k: (v.value if isinstance(v, enum.Enum) else v) for k, v in caps.items()
            },
        }
    )


def parse_action(raw: Mapping[str, Any], where: str) -> Action:
    op = _enum(Op, field_of(raw, "op", str, where), f"{where}.op")
    action = Action(
        id=field_of(raw, "id", str, where),
        op=op,
        stream=field_of(raw, "stream", str, where),
        at=float(optional(raw, "at", (int, float), where, 0.0)),
        user=optional(raw, "user", str, where, ""),
        turn=optional(raw, "turn", str, where, ""),
        data=raw.get("data"),
        message=optional(raw, "message", str, where, ""),
        session=optional(raw, "session", str, where, ""),
    )
    if op in ATTACH_OPS | {Op.DETACH} and not action.session:
        raise ProtocolError(f"{where}: a {op.value} names its 'session'")
    if op in ATTACH_OPS | {Op.CREATE, Op.ABORT} and not action.user:
        raise ProtocolError(f"{where}: a {op.value} names its 'user'")
    if op is Op.CREATE and not action.turn:
        raise ProtocolError(f"{where}: a create names its 'turn'")
    return action


def parse_init(raw: Mapping[str, Any]) -> Init:
    where = "init"
    redis = optional(raw, "redis", dict, where, None)
    server = optional(raw, "server", dict, where, None)
    if redis is None and server is None:
        raise ProtocolError(f"{where}: names neither a 'redis' nor a 'server'")
    mode = field_of(raw, "mode", str, where)
    if mode not in ("plan", "interactive"):
        raise ProtocolError(f"{where}: field 'mode' must be 'plan' or 'interactive'")
    actions = field_of(raw, "actions", list, where)
    settings = optional(raw, "settings", dict, where, {})
    return Init(
        replica=field_of(raw, "replica", str, where),
        protocol=_protocol(raw, where) if "protocol" in raw else 1,
        incarnation=optional(raw, "incarnation", int, where, 1),
        redis_url=None if redis is None else field_of(redis, "url", str, f"{where}.redis"),
        cluster=redis is not None and field_of(redis, "cluster", bool, f"{where}.redis"),
        server_url=None if server is None else field_of(server, "url", str, f"{where}.server"),
        mode=mode,
        actions=tuple(
            parse_action(a if isinstance(a, dict) else {}, f"{where}.actions[{i}]")
            for i, a in enumerate(actions)
        ),
        settings={
            str(k): float(field_of(settings, k, (int, float), f"{where}.settings"))
            for k in settings
        },
    )
