
if refusal(KEYS[1], ARGV[1], 'chunk', '0') == -5 then return 1 end
return 0
