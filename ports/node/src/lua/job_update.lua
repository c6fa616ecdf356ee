local allowed = {["aborted"] = {["aborted"] = true}, ["complete"] = {["complete"] = true}, ["error"] = {["error"] = true}, ["running"] = {["aborted"] = true, ["complete"] = true, ["error"] = true, ["running"] = true}}
local terminal = {["aborted"] = true, ["complete"] = true, ["error"] = true}

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
