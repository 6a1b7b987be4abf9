-- The fleet's shake plan: generate `total` shake envelopes at `qps` a second from now, whichever
-- instance is the fleet's generator (gen_lease.lua). KEYS[1]: the plan ({gen}). ARGV: qps,
-- total, the plan's token (unique to one request of one instance: its retries send the same).
-- A new plan replaces the last (a new epoch: what it made stays made); the same token again (a
-- retry after a lost answer) changes nothing. Returns the epoch.
if redis.call('HGET', KEYS[1], 'token') == ARGV[3] then
    return tonumber(redis.call('HGET', KEYS[1], 'epoch'))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'qps', ARGV[1], 'total', ARGV[2], 'start', now, 'token', ARGV[3])
return epoch
