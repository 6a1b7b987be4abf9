-- What one partition of the budget holds, for the audit (reads only).
-- KEYS[1]: queue; KEYS[2]: counters; KEYS[3]: leases; KEYS[4]: bitmap. ARGV[1]: lease prefix.
-- Returns {generated, generated amount, queued, queued amount, leased, leased amount,
-- handed out, handed out amount, expired, expired amount, returned, late, dup, bits set,
-- leases}. The balance rule is the caller's.
local c = redis.call('HMGET', KEYS[2], 'g', 'ga', 'o', 'oa', 'x', 'xa', 'r', 'late', 'dup')
for i = 1, #c do
    c[i] = tonumber(c[i] or '0')
end
local q, qa = 0, 0
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    q = q + 1
    qa = qa + tonumber(string.sub(e, string.find(e, ':', 1, true) + 1))
end
local l, la, leases = 0, 0, 0
for _, who in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    leases = leases + 1
    local all = redis.call('HGETALL', ARGV[1] .. who)
    for i = 2, #all, 2 do
        l, la = l + 1, la + tonumber(all[i])
    end
end
return {c[1], c[2], q, qa, l, la, c[3], c[4], c[5], c[6], c[7], c[8], c[9],
        redis.call('BITCOUNT', KEYS[4]), leases}
