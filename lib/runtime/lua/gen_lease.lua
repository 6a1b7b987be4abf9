-- The fleet's generator: at most one instance at a time holds the lease and makes the plan's
-- envelopes. KEYS[1]: the lease ({gen}:lease), KEYS[2]: the plan ({gen}); ARGV: the instance,
-- the lease's length in ms.
-- The holder renews it; anybody takes it once it has run out (its holder died or lost Redis).
-- Returns {1 when the caller holds it now, else 0; the plan's fields qps, total, start, epoch and
-- Redis's clock (ms)}: the holder paces itself by the plan and that clock.
local holder = redis.call('GET', KEYS[1])
local mine = 0
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    mine = 1
elseif not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    mine = 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local plan = redis.call('HMGET', KEYS[2], 'qps', 'total', 'start', 'epoch')
return {mine, tonumber(plan[1] or '0'), tonumber(plan[2] or '0'), tonumber(plan[3] or '0'),
        tonumber(plan[4] or '0'), now}
