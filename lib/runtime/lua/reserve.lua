-- Reserve ids: move a space's high-water mark from what the caller last saw to a new one.
-- KEYS[1]: the fleet's id hash ({ids}); ARGV: field (the space), expected (the mark the caller
-- saw; 0 when it saw none), new (the mark it wants). The id arithmetic is the caller's
-- (hongbao/envelope.h); here only compare-and-set. Returns {1, new} when the reservation is the
-- caller's, {0, the mark stored} when another moved it first (read and try again from there).
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur == tonumber(ARGV[2]) and tonumber(ARGV[3]) > cur then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    return {1, tonumber(ARGV[3])}
end
return {0, cur}
