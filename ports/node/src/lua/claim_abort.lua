
local refused = refusal(KEYS[1], ARGV[1], 'done', '1')
if refused then return refused end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -3 end
redis.call('HSET', KEYS[1], 'abortClaimed', '1')
return 0
