"""The publish script: seq allocation, chunk-log append and PUBLISH in one round trip.

KEYS: 1 ``stream:{id}:seq``  2 ``stream:{id}:chunks``  3 ``stream:{id}:job``
      4 ``stream:{id}:seqepoch``
ARGV: 1 generation  2 kind (chunk|done|error)  3 envelope prefix  4 envelope suffix
      5 channel  6 floor (lowest acceptable seq)  7 log payload (event JSON or error)
      8 chunk-log TTL seconds  9 counter TTL seconds
      10 seqs to skip after a failover or restart (see ``raise_to_floor``)
      11 "1" if the event is an abort's terminal, else "0"

Returns ``{seq, regressed}`` or ``{code, 0}`` with a negative refusal code:
-1 no job, -2 another generation owns the stream, -3 the job has ended (any event but
an abort's terminal) or sent its terminal (chunks), -4 this generation already
published its terminal, -5 an abort has claimed the turn (:data:`CLAIM_ABORT`): only
the abort's terminal may follow.

The fence makes four promises the subscribers rely on: a replaced turn can never
publish again; no chunk follows a terminal; a generation has at most one terminal;
once an abort is accepted, its terminal is the one readers get.
The floor makes a fourth: after Redis lost writes (restart, failover) the counter is
pushed past every seq this replica has seen, so one seq never names two events, and
a ``lost`` row (impl/redis/_chunklog.py) tells readers which seqs are gone for good.
:data:`MARK_LOST` does the same without publishing, for a replica that learns of a
reconnect or starts a new turn.

The script is three Lua functions, one step each (:data:`FENCE_LUA`,
:data:`RAISE_TO_FLOOR_LUA`, :data:`LOG_AND_PUBLISH_LUA`), and the few lines that run
them in order. :data:`PUBLISH_BATCH` runs the same steps for several events of one
generation in one call (coalesced emits), atomically like a single publish.
"""

from __future__ import annotations

from streamcheck.impl.redis import LuaScript

RAISE_TO_FLOOR_LUA = """
-- Make sure the counter `seq_key` is past every seq that may already have been used,
-- leaving a `lost` row in `log_key` for seqs that exist nowhere any more.
--   floor: the lowest acceptable next seq (1 + the highest seq the caller has seen);
--   the server's run id differs from the one stored in `epoch_key`: this Redis was
--   restarted or failed over since the counter last moved, so it may have lost any
--   recent allocation, seen by nobody still alive. Jump to the server's clock in
--   milliseconds: a later failover from the same stale counter then lands past what
--   this server hands out, as long as a stream allocates less than one seq per
--   millisecond. Only if the counter is already past the clock (a clock behind the
--   old server's) does it skip `skip` seqs instead, which a second failover from the
--   same counter would repeat.
-- Returns (pushed, first lost seq): (0, -1) if nothing was wrong, (1, -1) if the log
-- still had every seq below the new counter.
local function raise_to_floor(seq_key, log_key, epoch_key, floor, skip, log_ttl, counter_ttl)
  local n = tonumber(redis.call('GET', seq_key) or '0')
  local target = floor
  local info = redis.call('INFO', 'server')
  local at = string.find(info, 'run_id:', 1, true)  -- plain, then anchored: no scan by pattern
  local run_id = at and string.match(info, '^%w+', at + 7) or ''
  local stored = redis.call('GET', epoch_key)
  if stored ~= run_id then
    redis.call('SET', epoch_key, run_id, 'EX', counter_ttl)
    if stored then
      local now = redis.call('TIME')
      local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
      if now_ms > n then
        target = math.max(target, now_ms)
      else
        target = math.max(target, n + skip)
      end
    end
  end
  if n >= target then return 0, -1 end
  local first = n
  local last = target - 1
  local tail = redis.call('XREVRANGE', log_key, '+', '-', 'COUNT', 1)
  if tail[1] then
    local logged = tonumber(string.match(tail[1][1], '^(%d+)-'))
    if logged >= first then first = logged + 1 end
  end
  if first <= last then
    local last_s = string.format('%d', last)  -- never 1e+12 notation
    local row = {'seq', last_s, 'type', 'lost', 'first', string.format('%d', first)}
    if target > floor then  -- the part above the floor nobody saw: maybe never used
      table.insert(row, 'possibly')
      table.insert(row, string.format('%d', math.max(floor, first)))
    end
    redis.call('XADD', log_key, last_s .. '-2', unpack(row))
    if redis.call('TTL', log_key) < log_ttl then
      redis.call('EXPIRE', log_key, log_ttl)
    end
  else
    first = -1
  end
  redis.call('SET', seq_key, string.format('%d', target), 'EX', counter_ttl)
  return 1, first
end
"""

FENCE_LUA = """
-- The publish fence: nil if generation `gen` may publish an event of `kind` now, else
-- the refusal code (see the module docstring). `by_abort` is '1' for an abort's terminal.
-- `job` is the job's fields as `job_fields` reads them (a batch reads them once and
-- notes its own terminal in them).
local function job_fields(job_key)
  return redis.call('HMGET', job_key, 'generationId', 'status', 'terminalSeq', 'abortClaimed')
end
local function refusal_of(job, gen, kind, by_abort)
  if not job[1] then return -1 end
  if job[1] ~= gen then return -2 end
  if job[4] and by_abort ~= '1' then return -5 end
  if kind == 'chunk' then
    if job[2] ~= 'running' or job[3] then return -3 end
  elseif job[3] then
    return -4
  elseif job[2] ~= 'running' and by_abort ~= '1' then
    -- The job ended without a terminal on the log (a reader judged the producer lost):
    -- readers were told so, and a late producer's done or error must not follow.
    return -3
  end
  return nil
end
local function refusal(job_key, gen, kind, by_abort)
  return refusal_of(job_fields(job_key), gen, kind, by_abort)
end
"""

LOG_AND_PUBLISH_LUA = """
-- Append the event to the chunk log under entry id `entry` and publish it, with the
-- publish script's KEYS and ARGV; keep the counter's and the log's TTLs fresh, and
-- record a terminal's seq on the job (the fence's "terminal already sent").
-- `seq` is a string in integer notation: Lua 5.1 would write 1e14 as "1e+14".
-- TTLs are extended only when close to expiry, so most calls pay two TTLs and no
-- EXPIRE: the counter (and its epoch) once less than half of its TTL is left; the log,
-- whenever less than its TTL is left, by a tenth more than its TTL (so it still
-- outlives its last event by at least the TTL, and is extended once every tenth of it).
local function keep_counter_ttl(counter_ttl)
  if redis.call('TTL', KEYS[1]) < counter_ttl / 2 then
    redis.call('EXPIRE', KEYS[1], counter_ttl)
    redis.call('EXPIRE', KEYS[4], counter_ttl)
  end
end
local function keep_log_ttl(log_ttl)
  if redis.call('TTL', KEYS[2]) < log_ttl then
    redis.call('EXPIRE', KEYS[2], log_ttl + math.ceil(log_ttl / 10))
  end
end
local function append_to_log(entry, seq, kind, gen, payload)
  local field = 'event'
  if kind == 'error' then field = 'error' end
  redis.call('XADD', KEYS[2], entry, 'seq', seq, 'type', kind, 'gen', gen, field, payload)
end
local function log_and_publish(seq, entry)
  local kind = ARGV[2]
  keep_counter_ttl(tonumber(ARGV[9]))
  append_to_log(entry, seq, kind, ARGV[1], ARGV[7])
  keep_log_ttl(tonumber(ARGV[8]))
  if kind ~= 'chunk' then
    redis.call('HSET', KEYS[3], 'terminalSeq', seq)
  end
  redis.call('PUBLISH', ARGV[5], ARGV[3] .. seq .. ARGV[4])
end
"""

PUBLISH = LuaScript(
    "publish",
    FENCE_LUA
    + RAISE_TO_FLOOR_LUA
    + LOG_AND_PUBLISH_LUA
    + """
local refused = refusal(KEYS[3], ARGV[1], ARGV[2], ARGV[11])
if refused then return {refused, 0} end
local regressed = raise_to_floor(  -- the first of its two results
  KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[10]), tonumber(ARGV[8]),
  tonumber(ARGV[9]))
local seq = string.format('%d', redis.call('INCR', KEYS[1]) - 1)
log_and_publish(seq, seq .. '-1')  -- the log is readable by seq
return {tonumber(seq), regressed}
""",
)

#: Fields per event in :data:`PUBLISH_BATCH`'s ARGV, after :data:`BATCH_HEADER_ARGS`.
BATCH_EVENT_ARGS = 5
#: ARGV of :data:`PUBLISH_BATCH` before its first event.
BATCH_HEADER_ARGS = 6

#: Several events of one generation in one call, each fenced, sequenced and logged as
#: :data:`PUBLISH` would, in order, and fanned out in one message.
#: KEYS: as :data:`PUBLISH`.
#: ARGV: 1 generation  2 channel  3 floor  4 chunk-log TTL seconds  5 counter TTL
#: seconds  6 seqs to skip after a failover or restart; then five per event: kind,
#: "1" if an abort's terminal else "0", log payload, envelope prefix, envelope suffix.
#: Returns ``{regressed, r1, r2, ...}``: per event its seq, or its refusal code (as
#: :data:`PUBLISH`'s). The fence reads the job once; a terminal in the batch is noted
#: in what it read, so the events after it are refused as they would be one call
#: later. The counter is raised to the floor (and checked for a failover) once, before
#: the first event that passes the fence, and moved once, by the events published.
#: The message is the one envelope when one event passed, else a JSON array of the
#: envelopes in seq order: readers of single envelopes still read every single event.
PUBLISH_BATCH = LuaScript(
    "publish_batch",
    FENCE_LUA
    + RAISE_TO_FLOOR_LUA
    + LOG_AND_PUBLISH_LUA
    + """
local gen = ARGV[1]
local log_ttl = tonumber(ARGV[4])
local counter_ttl = tonumber(ARGV[5])
local job = job_fields(KEYS[3])
local results = {0}
local envelopes = {}
local next_seq = nil
for i = 7, #ARGV, 5 do
  local kind = ARGV[i]
  local refused = refusal_of(job, gen, kind, ARGV[i + 1])
  if refused then
    results[#results + 1] = refused
  else
    if not next_seq then
      results[1] = raise_to_floor(  -- the first of its two results
        KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[6]), log_ttl, counter_ttl)
      next_seq = tonumber(redis.call('GET', KEYS[1]) or '0')
    end
    local seq = string.format('%d', next_seq)
    next_seq = next_seq + 1
    append_to_log(seq .. '-1', seq, kind, gen, ARGV[i + 2])
    if kind ~= 'chunk' then
      redis.call('HSET', KEYS[3], 'terminalSeq', seq)
      job[3] = seq
    end
    envelopes[#envelopes + 1] = ARGV[i + 3] .. seq .. ARGV[i + 4]
    results[#results + 1] = tonumber(seq)
  end
end
if next_seq then
  redis.call('INCRBY', KEYS[1], #envelopes)
  keep_counter_ttl(counter_ttl)
  keep_log_ttl(log_ttl)
  if #envelopes == 1 then
    redis.call('PUBLISH', ARGV[2], envelopes[1])
  else
    redis.call('PUBLISH', ARGV[2], '[' .. table.concat(envelopes, ',') .. ']')
  end
end
return results
""",
)

#: KEYS: 1 ``stream:{id}:seq``  2 ``stream:{id}:chunks``  3 ``stream:{id}:seqepoch``
#: ARGV: 1 floor  2 failover skip  3 chunk-log TTL seconds  4 counter TTL seconds
#: Returns ``{first, last}`` of the seqs marked lost, or ``{-1, -1}`` if none were.
MARK_LOST = LuaScript(
    "mark_lost",
    RAISE_TO_FLOOR_LUA
    + """
local pushed, first = raise_to_floor(
  KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]))
if first < 0 then return {-1, -1} end
return {first, tonumber(redis.call('GET', KEYS[1])) - 1}
""",
)

#: KEYS: 1 ``stream:{id}:job``  ARGV: 1 generation
#: An abort's first step: mark the turn as aborted in the publish fence, so that from
#: now on only the abort's terminal (ARGV 11 of :data:`PUBLISH`) may be published.
#: Returns 0 (claimed, or claimed already by another abort) or a refusal code: -1, -2,
#: -3 (the job is no longer running), -4 (the generation published its terminal).
CLAIM_ABORT = LuaScript(
    "claim_abort",
    FENCE_LUA
    + """
local refused = refusal(KEYS[1], ARGV[1], 'done', '1')
if refused then return refused end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -3 end
redis.call('HSET', KEYS[1], 'abortClaimed', '1')
return 0
""",
)

#: KEYS: 1 ``stream:{id}:job``  ARGV: 1 generation
#: Has an abort claimed ``generation``'s turn (:data:`CLAIM_ABORT`)? Read-only: the claim
#: exactly as the publish fence sees it (the fence refuses the generation's chunks with
#: -5 then). A replica asks before it obeys an abort signal from the channel, which
#: anyone who can PUBLISH may forge. Returns 1 or 0.
ABORT_CLAIMED = LuaScript(
    "abort_claimed",
    FENCE_LUA
    + """
if refusal(KEYS[1], ARGV[1], 'chunk', '0') == -5 then return 1 end
return 0
""",
)
