"""The valkey-glide adapter (the ``glide`` extra), public for code that needs glide's own
client beside the seam (benchmarks comparing raw commands). Importing this module imports
valkey-glide; ``streamcheck.impl.redis.open_redis_client(url, client="glide")`` is the
usual way in."""

from streamcheck.impl.redis._glide import GlideRedis, GlideStatistics, open_glide

__all__ = ["GlideRedis", "GlideStatistics", "open_glide"]
