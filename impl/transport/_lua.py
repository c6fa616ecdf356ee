"""The publish script: seq allocation, chunk-log append and PUBLISH in one round trip.

KEYS: 1 ``stream:{id}:seq``  2 ``stream:{id}:chunks``  3 ``stream:{id}:job``
ARGV: 1 generation  2 kind (chunk|done|error)  3 envelope prefix  4 envelope suffix
      5 channel  6 floor (lowest acceptable seq)  7 log payload (event JSON or error)
      8 chunk-log TTL seconds  9 counter TTL seconds
      10 pinned seq or "" (canary PER_PROCESS_COUNTERS only: use this seq, no INCR)
      11 "1" to apply the fence, "0" to skip it (canaries that restore LibreChat's
         fenceless publish only)

Returns ``{seq, regressed}`` or ``{code, 0}`` with a negative refusal code:
-1 no job, -2 another generation owns the stream, -3 the job has ended or sent its
terminal (chunks only), -4 this generation already published its terminal.

The fence makes three promises the subscribers rely on: a replaced turn can never
publish again; no chunk follows a terminal; a generation has at most one terminal.
The floor makes a fourth: after Redis lost writes (restart, failover) the counter is
pushed past every seq this replica has seen, so one seq never names two events.
"""

from __future__ import annotations

from impl.redis import LuaScript

PUBLISH = LuaScript(
    "publish",
    """
local gen = ARGV[1]
local kind = ARGV[2]
if ARGV[11] ~= '0' then
  local job = redis.call('HMGET', KEYS[3], 'generationId', 'status', 'terminalSeq')
  if not job[1] then return {-1, 0} end
  if job[1] ~= gen then return {-2, 0} end
  if kind == 'chunk' then
    if job[2] ~= 'running' or job[3] then return {-3, 0} end
  elseif job[3] then
    return {-4, 0}
  end
end
local regressed = 0
local seq
local entry
if ARGV[10] ~= '' then
  seq = tonumber(ARGV[10])
  entry = '*'  -- a pinned seq may repeat or go backwards: let Redis pick the id
else
  local n = redis.call('INCR', KEYS[1])
  local floor = tonumber(ARGV[6])
  if n <= floor then
    n = floor + 1
    redis.call('SET', KEYS[1], n)
    regressed = 1
  end
  seq = n - 1
  entry = seq .. '-1'
end
local counter_ttl = tonumber(ARGV[9])
if redis.call('TTL', KEYS[1]) < counter_ttl / 2 then
  redis.call('EXPIRE', KEYS[1], counter_ttl)
end
local field = 'event'
if kind == 'error' then field = 'error' end
redis.call('XADD', KEYS[2], entry, 'seq', seq, 'type', kind, 'gen', gen, field, ARGV[7])
local log_ttl = tonumber(ARGV[8])
if redis.call('TTL', KEYS[2]) < log_ttl then
  redis.call('EXPIRE', KEYS[2], log_ttl)
end
if kind ~= 'chunk' then
  redis.call('HSET', KEYS[3], 'terminalSeq', seq)
end
redis.call('PUBLISH', ARGV[5], ARGV[3] .. seq .. ARGV[4])
return {seq, regressed}
""",
)

REFUSALS = {-1: "no_job", -2: "other_generation", -3: "job_ended", -4: "terminal_already_sent"}
