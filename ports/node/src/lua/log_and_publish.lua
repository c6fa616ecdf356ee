
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
