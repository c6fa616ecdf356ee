
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
