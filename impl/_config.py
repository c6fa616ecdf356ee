"""Configuration, read from the environment the way LibreChat reads it.

LibreChat's variables (docs/design.md; ``api/cache/cacheConfig.js`` and ``redisClients.js``):

``USE_REDIS``
    ``true`` (any case, surrounding blanks ignored) turns Redis on; any other value, or
    none, leaves it off. This is LibreChat's ``isEnabled``: ``yes`` or ``1`` mean *off*.
``USE_REDIS_STREAMS``
    Streams go through Redis. Defaults to ``USE_REDIS`` when unset. With Redis off it has
    no effect (LibreChat then falls back to in-memory streams).
``USE_REDIS_CLUSTER``
    ``true``: ``REDIS_URI`` names a Cluster startup node. A comma-separated ``REDIS_URI``
    (several startup nodes) also means Cluster, as in LibreChat.
``REDIS_URI``
    Required when ``USE_REDIS`` is on. ``redis://`` or ``rediss://`` (TLS).
``REDIS_USERNAME``, ``REDIS_PASSWORD``
    Used when the (first) URI carries no username / password of its own.
``REDIS_CA``
    Path of a CA bundle; turns TLS on and verifies the server certificate with it.
``REDIS_KEY_PREFIX``, ``REDIS_KEY_PREFIX_VAR``
    The deployment's key prefix, or the *name* of another variable that holds it (for
    example a pod's deployment id). Setting both is an error, as in LibreChat. Like
    ioredis's ``keyPrefix`` it applies to keys, never to pub/sub channels, and LibreChat
    joins it to the key with ``::`` (see :attr:`StreamConfig.effective_key_prefix`).

streamcheck's own overrides (positive numbers; defaults are the constants below):

=====================================  ===================================  ===========
variable                               field                                default
=====================================  ===================================  ===========
``STREAMCHECK_REORDER_TIMEOUT_MS``     ``reorder_timeout_s``                500 ms
``STREAMCHECK_REORDER_CAPACITY``       ``reorder_capacity``                 100
``STREAMCHECK_RUNNING_TTL_S``          ``running_ttl_s``                    1200
``STREAMCHECK_COMPLETED_TTL_S``        ``completed_ttl_s``                  300
``STREAMCHECK_CLEANUP_INTERVAL_S``     ``cleanup_interval_s``               60
``STREAMCHECK_EARLY_BUFFER_MAX_EVENTS``  ``early_buffer_max_events``        5000
``STREAMCHECK_EARLY_BUFFER_MAX_BYTES``   ``early_buffer_max_bytes``         8 MiB
``STREAMCHECK_MAX_EVENT_BYTES``        ``max_event_bytes``                  1 MiB
``STREAMCHECK_STALE_JOB_TIMEOUT_S``    ``stale_job_timeout_s``              1200
``STREAMCHECK_IDLE_PROBE_MS``          ``idle_probe_s``                     2000 ms
=====================================  ===================================  ===========

``STREAMCHECK_REDIS_CLIENT`` (field ``redis_client``) picks the Redis client: ``coredis``
(the default) or ``glide`` (valkey-glide; needs the ``streamcheck[glide]`` extra and serves
one ``trio.run`` at a time per process, docs/redis.md). Any other value raises
``ValueError``.

A malformed or non-positive value raises ``ValueError`` naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from streamcheck.impl._errors import redact_url

# Reorder buffer: a missing seq is waited for 500 ms, at most 100 messages are parked
# (LibreChat #11650; docs/design.md).
REORDER_TIMEOUT_S = 0.5
REORDER_CAPACITY = 100
# RedisJobStore key TTLs: runningTtl 1200 s, completedTtl 300 s (docs/design.md).
RUNNING_TTL_S = 1200
COMPLETED_TTL_S = 300
# Manager and store cleanup interval, 60 000 ms (docs/design.md).
CLEANUP_INTERVAL_S = 60
# Early buffer caps, 5 000 events / 8 MiB (LibreChat #14612; docs/librechat.md, bug 13).
EARLY_BUFFER_MAX_EVENTS = 5000
EARLY_BUFFER_MAX_BYTES = 8 * 1024 * 1024
# Largest single event we publish. Not a LibreChat knob: streamcheck's own bound so one
# event can never fill a subscriber's pub/sub output buffer (docs/redis.md) or most of
# the early buffer.
MAX_EVENT_BYTES = 1024 * 1024
# staleJobTimeout, 20 min (LibreChat #13396; docs/design.md).
STALE_JOB_TIMEOUT_S = 1200
# How long a subscriber waits in silence before it checks the chunk log for tail events
# pub/sub lost. streamcheck's own: pub/sub loses messages silently in every fault class
# (docs/redis.md), and a stream whose last events were lost would stay
# silent forever without this probe.
IDLE_PROBE_S = 2.0

#: The Redis clients impl/ can run on (impl/redis/_open.py). coredis is the default;
#: glide is opt-in until it carries every tier (docs/redis.md).
RedisClientName = Literal["coredis", "glide"]
REDIS_CLIENTS: tuple[RedisClientName, ...] = ("coredis", "glide")
DEFAULT_REDIS_CLIENT: RedisClientName = "coredis"


def redis_client_name(value: str) -> RedisClientName:
    """``value`` as a client name; ``ValueError`` naming the choices otherwise."""
    for name in REDIS_CLIENTS:
        if value == name:
            return name
    raise ValueError(f"unknown Redis client {value!r}: choose one of {', '.join(REDIS_CLIENTS)}")


# LibreChat's GLOBAL_PREFIX_SEPARATOR: ioredis's keyPrefix is `${REDIS_KEY_PREFIX}::`.
KEY_PREFIX_SEPARATOR = "::"

_TRUE = "true"


def _enabled(value: str | None) -> bool:
    """LibreChat's ``isEnabled``: only the word ``true`` turns a switch on."""
    return value is not None and value.strip().lower() == _TRUE


def redact_uri_list(uris: str) -> str:
    """:func:`streamcheck.impl._errors.redact_url` for each URI of a comma-separated list."""
    return ",".join(redact_url(uri.strip()) for uri in uris.split(","))


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamConfig:
    """Everything streamcheck reads from the environment; see the module docstring.

    Build it with :meth:`from_env` or directly (tests). ``redis_url`` holds credentials:
    log :attr:`redacted_url` instead.
    """

    use_redis: bool = False
    use_redis_streams: bool = False
    use_redis_cluster: bool = False
    redis_url: str | None = None
    redis_ca: str | None = None
    key_prefix: str = ""
    reorder_timeout_s: float = REORDER_TIMEOUT_S
    reorder_capacity: int = REORDER_CAPACITY
    running_ttl_s: int = RUNNING_TTL_S
    completed_ttl_s: int = COMPLETED_TTL_S
    cleanup_interval_s: float = CLEANUP_INTERVAL_S
    early_buffer_max_events: int = EARLY_BUFFER_MAX_EVENTS
    early_buffer_max_bytes: int = EARLY_BUFFER_MAX_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES
    stale_job_timeout_s: float = STALE_JOB_TIMEOUT_S
    idle_probe_s: float = IDLE_PROBE_S
    redis_client: RedisClientName = DEFAULT_REDIS_CLIENT

    def __post_init__(self) -> None:
        redis_client_name(self.redis_client)
        if self.use_redis and not self.redis_url:
            raise ValueError("use_redis is on but redis_url is empty: set REDIS_URI")
        if self.use_redis_streams and not self.use_redis:
            raise ValueError("use_redis_streams needs use_redis (USE_REDIS=true)")
        for name in (
            "reorder_timeout_s",
            "reorder_capacity",
            "running_ttl_s",
            "completed_ttl_s",
            "cleanup_interval_s",
            "early_buffer_max_events",
            "early_buffer_max_bytes",
            "max_event_bytes",
            "stale_job_timeout_s",
            "idle_probe_s",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.max_event_bytes > self.early_buffer_max_bytes:
            raise ValueError(
                f"max_event_bytes ({self.max_event_bytes}) exceeds early_buffer_max_bytes "
                f"({self.early_buffer_max_bytes}): one event could never be buffered"
            )

    @property
    def redacted_url(self) -> str | None:
        """``redis_url`` with every password replaced by ``***``, for logs and errors."""
        return None if self.redis_url is None else redact_uri_list(self.redis_url)

    @property
    def effective_key_prefix(self) -> str:
        """The prefix LibreChat's ioredis puts before every key: ``<prefix>::`` (also with
        an empty prefix). Pass this to :class:`streamcheck.impl.redis.Keys` to share keys with
        it."""
        return f"{self.key_prefix}{KEY_PREFIX_SEPARATOR}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StreamConfig:
        """Read the variables of the module docstring from ``environ`` (e.g. ``os.environ``)."""
        use_redis = _enabled(environ.get("USE_REDIS"))
        streams_raw = environ.get("USE_REDIS_STREAMS")
        use_streams = use_redis if streams_raw is None else _enabled(streams_raw)
        uri = (environ.get("REDIS_URI") or "").strip()
        if use_redis and not uri:
            raise ValueError("USE_REDIS is enabled but REDIS_URI is not set")

        prefix_var = environ.get("REDIS_KEY_PREFIX_VAR")
        prefix = environ.get("REDIS_KEY_PREFIX")
        if prefix_var and prefix:
            raise ValueError("Only either REDIS_KEY_PREFIX_VAR or REDIS_KEY_PREFIX can be set")
        key_prefix = (environ.get(prefix_var) if prefix_var else prefix) or ""

        ca = environ.get("REDIS_CA") or None
        url: str | None = None
        if uri:
            url = _merge_connection(
                uri,
                username=environ.get("REDIS_USERNAME") or None,
                password=environ.get("REDIS_PASSWORD") or None,
                ca=ca,
            )
        return cls(
            use_redis=use_redis,
            use_redis_streams=use_redis and use_streams,
            use_redis_cluster=_enabled(environ.get("USE_REDIS_CLUSTER")) or "," in uri,
            redis_url=url,
            redis_ca=ca,
            key_prefix=key_prefix,
            reorder_timeout_s=_number(environ, "STREAMCHECK_REORDER_TIMEOUT_MS", 1000)
            or REORDER_TIMEOUT_S,
            reorder_capacity=_integer(environ, "STREAMCHECK_REORDER_CAPACITY", REORDER_CAPACITY),
            running_ttl_s=_integer(environ, "STREAMCHECK_RUNNING_TTL_S", RUNNING_TTL_S),
            completed_ttl_s=_integer(environ, "STREAMCHECK_COMPLETED_TTL_S", COMPLETED_TTL_S),
            cleanup_interval_s=_number(environ, "STREAMCHECK_CLEANUP_INTERVAL_S", 1)
            or CLEANUP_INTERVAL_S,
            early_buffer_max_events=_integer(
                environ, "STREAMCHECK_EARLY_BUFFER_MAX_EVENTS", EARLY_BUFFER_MAX_EVENTS
            ),
            early_buffer_max_bytes=_integer(
                environ, "STREAMCHECK_EARLY_BUFFER_MAX_BYTES", EARLY_BUFFER_MAX_BYTES
            ),
            max_event_bytes=_integer(environ, "STREAMCHECK_MAX_EVENT_BYTES", MAX_EVENT_BYTES),
            stale_job_timeout_s=_number(environ, "STREAMCHECK_STALE_JOB_TIMEOUT_S", 1)
            or STALE_JOB_TIMEOUT_S,
            idle_probe_s=_number(environ, "STREAMCHECK_IDLE_PROBE_MS", 1000) or IDLE_PROBE_S,
            redis_client=redis_client_from_env(environ),
        )


def redis_client_from_env(environ: Mapping[str, str]) -> RedisClientName:
    """``STREAMCHECK_REDIS_CLIENT`` (blanks ignored), or the default when unset or empty."""
    raw = (environ.get("STREAMCHECK_REDIS_CLIENT") or "").strip()
    if not raw:
        return DEFAULT_REDIS_CLIENT
    try:
        return redis_client_name(raw)
    except ValueError as exc:
        raise ValueError(f"STREAMCHECK_REDIS_CLIENT: {exc}") from None


def _number(environ: Mapping[str, str], name: str, per_second: int) -> float | None:
    """The variable as seconds (it is given in 1/``per_second`` s), or ``None`` if unset."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value / per_second


def _integer(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def _merge_connection(
    uris: str, *, username: str | None, password: str | None, ca: str | None
) -> str:
    """Put REDIS_USERNAME / REDIS_PASSWORD / REDIS_CA into every URI of the list.

    As in LibreChat, the first URI's own username and password win over the variables, each
    on its own, and apply to every node.
    """
    parts = [urlsplit(uri.strip()) for uri in uris.split(",") if uri.strip()]
    # urlsplit leaves percent-encoding in place, so the URI's own values stay as written.
    user = parts[0].username or quote(username or "", safe="")
    secret = parts[0].password or quote(password or "", safe="")
    auth = f"{user}:{secret}@" if secret else (f"{user}@" if user else "")
    merged = []
    for part in parts:
        if part.scheme not in ("redis", "rediss"):
            raise ValueError(f"REDIS_URI must use redis:// or rediss://, got {part.scheme!r}")
        host = part.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = auth + (host if part.port is None else f"{host}:{part.port}")
        scheme, query = part.scheme, part.query
        if ca is not None:
            scheme = "rediss"
            query = urlencode(
                [*parse_qsl(query), ("ssl_ca_certs", ca), ("ssl_cert_reqs", "required")]
            )
        merged.append(urlunsplit((scheme, netloc, part.path, query, part.fragment)))
    return ",".join(merged)
