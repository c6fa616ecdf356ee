
local refused = refusal(KEYS[3], ARGV[1], ARGV[2], ARGV[11])
if refused then return {refused, 0} end
local regressed = raise_to_floor(  -- the first of its two results
  KEYS[1], KEYS[2], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[10]), tonumber(ARGV[8]),
  tonumber(ARGV[9]))
local seq = string.format('%d', redis.call('INCR', KEYS[1]) - 1)
log_and_publish(seq, seq .. '-1')  -- the log is readable by seq
return {tonumber(seq), regressed}
