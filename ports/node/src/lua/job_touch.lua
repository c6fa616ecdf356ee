
if redis.call('HGET', KEYS[1], 'generationId') ~= ARGV[1] then return 0 end
local now = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'lastActiveAt') or '')
if last == nil or last < now then redis.call('HSET', KEYS[1], 'lastActiveAt', ARGV[2]) end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
