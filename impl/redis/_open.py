"""Choose the Redis client behind :class:`~streamcheck.impl.redis.RedisLike`.

``coredis`` is the default; ``glide`` (valkey-glide, the ``streamcheck[glide]`` extra) is
opt-in until it carries every tier (docs/redis.md). glide is imported only when chosen, so
the library works without it installed.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from streamcheck.impl._config import (
    DEFAULT_REDIS_CLIENT,
    REDIS_CLIENTS,
    RedisClientName,
    redis_client_name,
)
from streamcheck.impl._errors import StreamcheckError
from streamcheck.impl.redis._protocol import RedisLike


class GlideRunConflict(StreamcheckError, RuntimeError):
    """valkey-glide is already serving another ``trio.run`` of this process.

    glide reads every client's replies through one pipe per process, bound to one trio run;
    two runs at once steal each other's replies and stall (docs/redis.md). Run the second
    client in its own process, or use the coredis client there.
    """


def open_redis_client(
    url: str, *, cluster: bool = False, client: RedisClientName = DEFAULT_REDIS_CLIENT
) -> AbstractAsyncContextManager[RedisLike]:
    """:func:`~streamcheck.impl.redis.open_coredis` or
    :func:`~streamcheck.impl.redis._glide.open_glide`, by ``client``. Raises
    :class:`ModuleNotFoundError` with the install hint when glide is chosen but absent."""
    if client == "glide":
        try:
            from streamcheck.impl.redis._glide import open_glide
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "redis_client='glide' needs valkey-glide: pip install 'streamcheck[glide]'"
            ) from exc
        return open_glide(url, cluster=cluster)
    from streamcheck.impl.redis._coredis import open_coredis

    return open_coredis(url, cluster=cluster)


__all__ = [
    "DEFAULT_REDIS_CLIENT",
    "REDIS_CLIENTS",
    "GlideRunConflict",
    "RedisClientName",
    "glide_available",
    "open_redis_client",
    "redis_client_name",
]


def glide_available() -> bool:
    """True when valkey-glide can be imported (the ``streamcheck[glide]`` extra)."""
    try:
        import glide  # noqa: F401
    except ImportError:
        return False
    return True
