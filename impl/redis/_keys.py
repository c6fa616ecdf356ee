"""LibreChat's Redis key and channel layout (docs/design.md, "Redis layout").

Per-stream keys carry the stream id as a Cluster hash tag (``{id}``) so one stream's
keys share a slot and one Lua script may touch them all. The key prefix applies to keys
only: like ioredis's ``keyPrefix`` it is never applied to pub/sub channel names.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNEL_PREFIX = "stream:{"
CHANNEL_SUFFIX = "}:events"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = ""

    def job(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:job"

    def chunks(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:chunks"

    def run_steps(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:runsteps"

    def seq(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:seq"

    def seq_epoch(self, stream_id: str) -> str:
        """The run id of the Redis server that last advanced the counter (not in
        LibreChat: lets the publish script notice a failover or restart)."""
        return f"{self.prefix}stream:{{{stream_id}}}:seqepoch"

    @property
    def running(self) -> str:
        return f"{self.prefix}stream:running"

    def user_jobs(self, user_id: str) -> str:
        return f"{self.prefix}stream:user:{{{user_id}}}:jobs"

    @staticmethod
    def channel(stream_id: str) -> str:
        return f"{CHANNEL_PREFIX}{stream_id}{CHANNEL_SUFFIX}"

    @staticmethod
    def stream_id_of_channel(channel: str) -> str | None:
        """The stream id in ``stream:{id}:events``, or ``None`` for any other channel."""
        if not (channel.startswith(CHANNEL_PREFIX) and channel.endswith(CHANNEL_SUFFIX)):
            return None
        inner = channel[len(CHANNEL_PREFIX) : -len(CHANNEL_SUFFIX)]
        if not inner or "{" in inner or "}" in inner:
            return None
        return inner
