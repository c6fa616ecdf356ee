"""The Lua scripts of :class:`RedisJobStore`: every write to a job hash is one of these.

Each script touches only the keys of one stream (``stream:{id}:…``), which share a
Cluster hash slot, so it runs atomically on standalone Redis and Cluster alike. The
cross-slot indices (``stream:running``, the user sets) are updated by the caller with
separate commands.

The status table in :data:`UPDATE` is generated from
:data:`streamcheck.impl._status.ALLOWED_TRANSITIONS`, so the Lua CAS and
:func:`streamcheck.impl._status.check_transition` cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Final

from streamcheck.impl._status import ALLOWED_TRANSITIONS, JobStatus
from streamcheck.impl.redis import LuaScript

__all__ = ["CREATE", "DELETE", "SET_EX", "TOUCH", "UPDATE", "lua_status_tables"]


def _lua_string(text: str) -> str:
    # JSON string syntax is valid Lua for the ASCII status names used here.
    return json.dumps(text)


def lua_status_tables() -> str:
    """Lua source defining ``allowed[current][requested]`` and ``terminal[status]``."""
    rows = []
    for current in sorted(ALLOWED_TRANSITIONS, key=lambda s: s.value):
        targets = sorted(ALLOWED_TRANSITIONS[current], key=lambda s: s.value)
        inner = ", ".join(f"[{_lua_string(t.value)}] = true" for t in targets)
        rows.append(f"[{_lua_string(current.value)}] = {{{inner}}}")
    terminal = ", ".join(
        f"[{_lua_string(s.value)}] = true"
        for s in sorted(JobStatus, key=lambda s: s.value)
        if s.is_terminal
    )
    return f"local allowed = {{{', '.join(rows)}}}\nlocal terminal = {{{terminal}}}\n"


#: KEYS: job, seq, runsteps. ARGV: running TTL (s), then field/value pairs.
#: Replaces the job wholesale (no field of a previous turn survives: docs/librechat.md, bug 16)
#: and stamps ``startSeq`` with the stream counter, read in the same atomic step.
#: Returns ``startSeq``.
CREATE: Final = LuaScript(
    "jobstore_create",
    """
redis.call('DEL', KEYS[1], KEYS[3])
local start = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
start = math.max(0, math.floor(start))
redis.call('HSET', KEYS[1], 'startSeq', string.format('%d', start), unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return start
""",
)

#: KEYS: job, chunks, runsteps. ARGV: expected generation ('' = any), requested status
#: ('' = none), completed TTL (s), now (ms), then field/value pairs.
#: Returns 'missing' (absent, unreadable status or other generation: nothing written),
#: 'illegal:<current>' (forbidden transition: nothing written), 'ok', or 'terminal'
#: (written and now terminal: the caller takes the id out of the running set).
UPDATE: Final = LuaScript(
    "jobstore_update",
    lua_status_tables()
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current or allowed[current] == nil then return 'missing' end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'generationId') ~= ARGV[1] then
  return 'missing'
end
local requested = ARGV[2]
if requested ~= '' and not allowed[current][requested] then return 'illegal:' .. current end
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
if not terminal[requested] then return 'ok' end
if redis.call('HEXISTS', KEYS[1], 'completedAt') == 0 then
  redis.call('HSET', KEYS[1], 'completedAt', ARGV[4])
end
-- Expire rather than delete the chunk log: a late subscriber may still replay it.
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return 'terminal'
""",
)

#: KEYS: job, chunks, runsteps. ARGV: expected generation ('' = any), idle cutoff (ms,
#: '' = none). With a cutoff only a running job whose ``lastActiveAt`` (else
#: ``createdAt``) is before the cutoff is deleted: the staleness check and the delete
#: are one step, so activity recorded meanwhile saves the job.
#: Returns 1 if the job hash was deleted, else 0.
DELETE: Final = LuaScript(
    "jobstore_delete",
    """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'generationId') ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
  local last = tonumber(redis.call('HGET', KEYS[1], 'lastActiveAt') or '')
    or tonumber(redis.call('HGET', KEYS[1], 'createdAt') or '')
  if last == nil or last >= tonumber(ARGV[2]) then return 0 end
end
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
return existed
""",
)

#: KEYS: job. ARGV: generation, now (ms), running TTL (s).
#: Records activity of the current generation only; never moves ``lastActiveAt`` back.
#: A running job's TTL slides with its activity, so a long but live generation keeps
#: its hash. Returns 1 if recorded, else 0.
TOUCH: Final = LuaScript(
    "jobstore_touch",
    """
if redis.call('HGET', KEYS[1], 'generationId') ~= ARGV[1] then return 0 end
local now = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'lastActiveAt') or '')
if last == nil or last < now then redis.call('HSET', KEYS[1], 'lastActiveAt', ARGV[2]) end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
""",
)

#: KEYS: key. ARGV: value, TTL (s). ``SET key value EX ttl`` (RedisLike has no SET).
SET_EX: Final = LuaScript(
    "jobstore_set_ex",
    """
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
""",
)
