
redis.call('DEL', KEYS[1], KEYS[3])
local start = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
start = math.max(0, math.floor(start))
redis.call('HSET', KEYS[1], 'startSeq', string.format('%d', start), unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return start
