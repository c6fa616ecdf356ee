"""What the valkey-glide adapter needs around glide itself: reply decoding, the one place
where glide's exceptions become ours, connection settings read from a URL, and the guard
that keeps glide to one ``trio.run`` at a time in a process.

glide (Rust core) hands replies to Python through one OS pipe per process, read by a trio
system task of the ``trio.run`` that last created a client (docs/redis.md):

* **Sequential runs work** when every run creates its own clients: creating a client in a
  new run re-registers the pipe reader for that run (and throws away frames the previous
  run left unread). A client created in an earlier run and used first in a later one waits
  for ever, because no task of the new run reads the pipe until some client is created in
  it. The adapter therefore owns its clients inside an ``async with`` block: a client never
  outlives the run that made it.
* **Concurrent runs in one process break**: two runs (two threads) both read the same
  pipe, each steals the other's replies, and both stall. :func:`claim_trio_run` refuses
  a second concurrent run with :class:`GlideRunConflict` instead of letting it hang.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import trio
from glide import ClosingError, GlideError, RequestError
from glide import ConnectionError as GlideConnectionError
from glide import TimeoutError as GlideTimeoutError

from streamcheck.impl.redis._open import GlideRunConflict

#: Texts of glide ``RequestError`` messages that mean "not reachable now" rather than a
#: programming error. glide reports a failed (re)connection and a cluster between owners
#: as a plain ``RequestError`` whose text carries the cause; a Lua error, WRONGTYPE or a
#: cross-slot call has none of these.
_CONNECTION_TEXTS = (
    "connect failed",
    "ioerror",
    "io error",
    "broken pipe",
    "connection reset",
    "connection refused",
    "fatalsenderror",
    "fatalreceiveerror",
    "disconnected",
    "tryagain",
    "clusterdown",
    "all connections",
    "no connections",
    "timed out",
)


@dataclass(slots=True)
class _RunClaim:
    token: trio.lowlevel.TrioToken
    holders: int


_claim_lock = threading.Lock()
_claim: _RunClaim | None = None


def _run_is_over(token: trio.lowlevel.TrioToken) -> bool:
    try:
        token.run_sync_soon(_nothing)
    except trio.RunFinishedError:
        return True
    return False


def _nothing() -> None:
    return None


@contextmanager
def claim_trio_run() -> Iterator[None]:
    """Hold glide for the current trio run while the block runs; raises
    :class:`GlideRunConflict` if another run that is still going holds it.

    A holder whose run ended without leaving the block (an abandoned run) does not count:
    its run's token answers that it finished."""
    global _claim
    token = trio.lowlevel.current_trio_token()
    with _claim_lock:
        if _claim is not None and _claim.token is not token and not _run_is_over(_claim.token):
            raise GlideRunConflict(
                "valkey-glide already serves another trio.run in this process; glide "
                "supports one run at a time per process (docs/redis.md)"
            )
        if _claim is None or _claim.token is not token:
            _claim = _RunClaim(token=token, holders=0)
        _claim.holders += 1
        claim = _claim
    try:
        yield
    finally:
        with _claim_lock:
            claim.holders -= 1
            if claim.holders == 0 and _claim is claim:
                _claim = None


def is_connection_error(exc: BaseException) -> bool:
    """True for glide's connection failures and timeouts, and for the ``RequestError``s
    whose text names a connection or cluster-topology cause."""
    if isinstance(exc, GlideConnectionError | GlideTimeoutError | ClosingError | OSError):
        return True
    if isinstance(exc, RequestError):
        text = str(exc).lower()
        return any(marker in text for marker in _CONNECTION_TEXTS)
    return False


def is_no_script(exc: BaseException) -> bool:
    """The server does not have the script (EVALSHA's NOSCRIPT): it did not run."""
    return isinstance(exc, RequestError) and (
        "noscript" in str(exc).lower().replace(" ", "") or "no matching script" in str(exc).lower()
    )


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def decode(value: object) -> object:
    """A glide reply with every ``bytes`` turned into ``str`` (the shapes coredis gives with
    ``decode_responses=True``, which the rest of impl expects)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value.items()}
    if isinstance(value, set):
        return {decode(item) for item in value}
    return value


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSettings:
    """What a ``redis://`` / ``rediss://`` URL (or a comma-separated list of them, Cluster
    startup nodes) says about how to connect; the first URL's credentials, database and
    TLS options apply to every node, as in LibreChat."""

    endpoints: tuple[Endpoint, ...]
    use_tls: bool
    username: str | None
    password: str | None
    database: int
    ca_certificates: bytes | None


def parse_url(url: str) -> ConnectionSettings:
    """Read :class:`ConnectionSettings` from ``url``; ``ValueError`` for what glide can't
    connect to (a Unix socket, another scheme, a database number that is not one)."""
    parts = [urlsplit(uri.strip()) for uri in url.split(",") if uri.strip()]
    if not parts:
        raise ValueError("no Redis URL given")
    for part in parts:
        if part.scheme not in ("redis", "rediss"):
            raise ValueError(
                f"valkey-glide connects over redis:// or rediss:// only, got {part.scheme!r}"
            )
    first = parts[0]
    query: Mapping[str, list[str]] = parse_qs(first.query)
    database = 0
    path = first.path.strip("/")
    if path:
        if not path.isdigit():
            raise ValueError(f"the URL's database must be a number, got {path!r}")
        database = int(path)
    ca: bytes | None = None
    if "ssl_ca_certs" in query:
        ca = Path(query["ssl_ca_certs"][0]).read_bytes()
    return ConnectionSettings(
        endpoints=tuple(
            Endpoint(host=part.hostname or "localhost", port=part.port or 6379) for part in parts
        ),
        use_tls=first.scheme == "rediss",
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
        database=database,
        ca_certificates=ca,
    )


__all__ = [
    "ConnectionSettings",
    "Endpoint",
    "GlideError",
    "GlideRunConflict",
    "claim_trio_run",
    "decode",
    "describe",
    "is_connection_error",
    "is_no_script",
    "parse_url",
    "text",
]
