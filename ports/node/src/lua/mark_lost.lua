
local pushed, first = raise_to_floor(
  KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]))
if first < 0 then return {-1, -1} end
return {first, tonumber(redis.call('GET', KEYS[1])) - 1}
