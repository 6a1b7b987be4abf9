-- An instance draws shake envelopes from one partition of the budget into its lease.
-- KEYS[1]: the partition's queue; KEYS[2]: its counters; KEYS[3]: its leases (zset: instance ->
-- deadline, unix ms). ARGV: lease prefix (an instance's lease hash is prefix .. instance, its
-- last draw prefix .. instance .. ':d'), instance, count, lease ms, draw sequence number.
-- First every lease past its deadline expires: its envelopes are retired as expired (counted x,
-- xa), never drawn again (an instance that was only cut off may still hand them out; it reports
-- them, and they move from expired to handed out). Then up to count envelopes move from the
-- queue into this instance's lease, whose deadline moves on. A retry of the same sequence number
-- (its answer was lost) returns the same envelopes. A count of 0 is a sweep: the expiry alone.
-- Returns the drawn "index:amount" entries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, me = ARGV[1], ARGV[2]
for _, who in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
    local lease = prefix .. who
    local all = redis.call('HGETALL', lease)
    local n, amount = 0, 0
    for i = 2, #all, 2 do
        n = n + 1
        amount = amount + tonumber(all[i])
    end
    redis.call('DEL', lease, lease .. ':d')
    redis.call('ZREM', KEYS[3], who)
    if n > 0 then
        redis.call('HINCRBY', KEYS[2], 'x', n)
        redis.call('HINCRBY', KEYS[2], 'xa', amount)
    end
end
if ARGV[3] == '0' then
    return {} -- a sweep: expiry only, nothing drawn, no lease taken
end
local lease = prefix .. me
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), me)
local last = redis.call('GET', lease .. ':d')
if last then
    local sep = string.find(last, '|', 1, true)
    if string.sub(last, 1, sep - 1) == ARGV[5] then
        local again = {}
        for e in string.gmatch(string.sub(last, sep + 1), '[^,]+') do
            again[#again + 1] = e
        end
        return again
    end
end
local got = redis.call('LPOP', KEYS[1], tonumber(ARGV[3]))
if not got then
    got = {}
end
local fields = {}
for _, e in ipairs(got) do
    local sep = string.find(e, ':', 1, true)
    fields[#fields + 1] = string.sub(e, 1, sep - 1)
    fields[#fields + 1] = string.sub(e, sep + 1)
end
if #got > 0 then
    redis.call('HSET', lease, unpack(fields))
    redis.call('HINCRBY', KEYS[2], 'd', #got)
end
redis.call('SET', lease .. ':d', ARGV[5] .. '|' .. table.concat(got, ','))
return got
