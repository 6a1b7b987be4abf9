-- An instance gives back shake envelopes it drew and did not hand out (it stops, or it holds
-- more than it needs). KEYS[1]: the partition's queue; KEYS[2]: its counters; KEYS[3]: its leases.
-- ARGV: lease prefix, instance, final (1: the instance leaves: its lease ends once empty; what it
-- still holds expires with it), then indexes.
-- Each envelope still in the lease goes back to the front of the queue (r counts them); one not
-- in it (expired, or a retry's) is skipped. Returns how many went back.
local lease = ARGV[1] .. ARGV[2]
local back = {}
for i = 4, #ARGV do
    local amt = redis.call('HGET', lease, ARGV[i])
    if amt then
        redis.call('HDEL', lease, ARGV[i])
        back[#back + 1] = ARGV[i] .. ':' .. amt
    end
end
if #back > 0 then
    redis.call('LPUSH', KEYS[1], unpack(back))
    redis.call('HINCRBY', KEYS[2], 'r', #back)
end
if ARGV[3] == '1' and redis.call('HLEN', lease) == 0 then
    redis.call('ZREM', KEYS[3], ARGV[2])
    redis.call('DEL', lease, lease .. ':d')
end
return #back
