"""LibreChat's publish, for the canaries that change it: the same script with the
options LibreChat's lacked defences need (``per-process-counters``,
``counter-deleted-on-cleanup``, and the canaries that turn the publish fence off).

ARGV 1-11 are impl's (impl/transport/_lua.py), then:
      12 a seq to use instead of the shared counter's, or "" (no INCR, no floor)
      13 "1" to apply the fence, "0" to skip it
      14 "1": the counter may have gone back below the log's tail; such a seq is
         appended with ``XADD *`` (LibreChat's log was keyed by arrival)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamcheck.impl.redis import LuaScript
from streamcheck.impl.seams import (
    FENCE_LUA,
    LOG_AND_PUBLISH_LUA,
    RAISE_TO_FLOOR_LUA,
    Emit,
    PublishOutcome,
    StreamActor,
)
from streamcheck.impl.transport import RedisBus

PUBLISH_LIBRECHAT = LuaScript(
    "publish_librechat",
    FENCE_LUA
    + RAISE_TO_FLOOR_LUA
    + LOG_AND_PUBLISH_LUA
    + """
if ARGV[13] ~= '0' then
  local refused = refusal(KEYS[3], ARGV[1], ARGV[2], ARGV[11])
  if refused then return {refused, 0} end
end
local regressed = 0
local seq
local entry
if ARGV[12] ~= '' then
  seq = tonumber(ARGV[12])
  entry = '*'  -- a pinned seq may repeat or go backwards: let Redis pick the id
else
  regressed = raise_to_floor(
    KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[10]), tonumber(ARGV[8]),
    tonumber(ARGV[9]))
  seq = string.format('%d', redis.call('INCR', KEYS[1]) - 1)
  entry = seq .. '-1'
  if ARGV[14] == '1' then
    local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    if tail[1] and tonumber(string.match(tail[1][1], '^(%d+)-')) >= tonumber(seq) then
      entry = '*'  -- LibreChat's log was keyed by arrival; ids cannot go back
    end
  end
end
log_and_publish(seq, entry)
return {tonumber(seq), regressed}
""",
)


@dataclass(frozen=True, slots=True)
class PublishOptions:
    #: Publish under this seq instead of one from the shared counter.
    pinned_seq: int | None = None
    #: Apply the publish fence.
    fenced: bool = True
    #: The counter may have gone back behind the log.
    reused_seqs: bool = False


class PublishesLikeLibreChat(RedisBus):
    async def publish(
        self,
        stream_id: str,
        *,
        encoded_body: str | None = None,
        options: PublishOptions = PublishOptions(),
        **event: Any,
    ) -> PublishOutcome:
        args = self._publish_args(stream_id, encoded_body=encoded_body, **event)
        args += [
            "" if options.pinned_seq is None else options.pinned_seq,
            "1" if options.fenced else "0",
            "1" if options.reused_seqs else "0",
        ]
        reply = await self._redis.run_script(
            PUBLISH_LIBRECHAT, keys=self._publish_keys(stream_id), args=args
        )
        return self._publish_outcome(stream_id, reply)


class PublishesWithOptions(StreamActor):
    """Publishes through :class:`PublishesLikeLibreChat` with the options each canary
    adds (``_publish_options``)."""

    def _publish_options(self) -> PublishOptions:
        return PublishOptions()

    async def _publish_batch_on_bus(self, batch: Sequence[Emit]) -> Sequence[PublishOutcome]:
        # LibreChat published one event per call: a batch goes out event by event.
        return [await self._publish_on_bus(command) for command in batch]

    async def _publish_on_bus(self, command: Emit) -> PublishOutcome:
        assert isinstance(self._bus, PublishesLikeLibreChat)
        return await self._bus.publish(
            self.stream_id,
            generation=command.generation,
            kind=command.kind,
            body=command.body,
            encoded_body=command.encoded,
            floor=self._floor(),
            by_abort=command.by_abort,
            options=self._publish_options(),
        )
