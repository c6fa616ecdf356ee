
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
local log_ttl = tonumber(ARGV[8])
local regressed = 0
local seq
local entry
if ARGV[10] ~= '' then
  seq = tonumber(ARGV[10])
  entry = '*'  -- a pinned seq may repeat or go backwards: let Redis pick the id
else
  regressed = raise_to_floor(  -- the first of its two results
    KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[12]), log_ttl,
    tonumber(ARGV[9]))
  seq = redis.call('INCR', KEYS[1]) - 1
  entry = seq .. '-1'
  if ARGV[13] == '1' then
    local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    if tail[1] and tonumber(string.match(tail[1][1], '^(%d+)-')) >= seq then
      entry = '*'  -- LibreChat's log was keyed by arrival; ids cannot go back
    end
  end
end
local counter_ttl = tonumber(ARGV[9])
if redis.call('TTL', KEYS[1]) < counter_ttl / 2 then
  redis.call('EXPIRE', KEYS[1], counter_ttl)
  redis.call('EXPIRE', KEYS[4], counter_ttl)
end
local field = 'event'
if kind == 'error' then field = 'error' end
redis.call('XADD', KEYS[2], entry, 'seq', seq, 'type', kind, 'gen', gen, field, ARGV[7])
if redis.call('TTL', KEYS[2]) < log_ttl then
  redis.call('EXPIRE', KEYS[2], log_ttl)
end
if kind ~= 'chunk' then
  redis.call('HSET', KEYS[3], 'terminalSeq', seq)
end
redis.call('PUBLISH', ARGV[5], ARGV[3] .. seq .. ARGV[4])
return {seq, regressed}
