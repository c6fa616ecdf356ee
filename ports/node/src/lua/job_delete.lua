
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
