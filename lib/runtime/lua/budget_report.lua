-- An instance reports shake envelopes it handed out.
-- KEYS[1]: the partition's counters; KEYS[2]: its leases (zset); KEYS[3]: its bitmap of
-- envelopes handed out (bit index / partitions). ARGV: lease prefix, instance, lease ms,
-- partitions, then index, amount pairs. An envelope still in the lease leaves it, handed out
-- (o, oa). One whose lease expired (retired as expired) and was handed out all the same moves from
-- expired to handed out (late). One already reported is a retry's: skipped. A bit set twice is
-- counted (dup), which the audit refuses. The lease's deadline moves on.
-- Returns {handed out now, of them late, repeats}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = ARGV[1] .. ARGV[2]
local parts = tonumber(ARGV[4])
local out, amount, late, late_amount, again, dup = 0, 0, 0, 0, 0, 0
for i = 5, #ARGV, 2 do
    local idx, amt = ARGV[i], tonumber(ARGV[i + 1])
    local bit = math.floor(tonumber(idx) / parts)
    if redis.call('HDEL', lease, idx) == 1 then
        if redis.call('SETBIT', KEYS[3], bit, 1) == 1 then
            dup = dup + 1
        end
        out, amount = out + 1, amount + amt
    elseif redis.call('GETBIT', KEYS[3], bit) == 1 then
        again = again + 1
    else
        redis.call('SETBIT', KEYS[3], bit, 1)
        out, amount = out + 1, amount + amt
        late, late_amount = late + 1, late_amount + amt
    end
end
if out > 0 then
    redis.call('HINCRBY', KEYS[1], 'o', out)
    redis.call('HINCRBY', KEYS[1], 'oa', amount)
end
if late > 0 then
    redis.call('HINCRBY', KEYS[1], 'x', -late)
    redis.call('HINCRBY', KEYS[1], 'xa', -late_amount)
    redis.call('HINCRBY', KEYS[1], 'late', late)
end
if dup > 0 then
    redis.call('HINCRBY', KEYS[1], 'dup', dup)
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return {out, late, again}
