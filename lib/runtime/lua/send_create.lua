-- Store a send-envelope whose shares were split by the creator (double mean, hongbao/envelope.h).
-- KEYS[1]: the envelope's hash ({e:ID}); ARGV: total, created (unix ms), creator, then
-- user, share pairs. Ids are reserved durably before use and never reused, so an existing
-- envelope can only be this creator's own earlier attempt whose answer was lost: the same
-- total and creator answer 1 again; anything else is refused ("EXISTS").
-- Returns 1 once the envelope is stored.
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
    local t = redis.call('HMGET', key, 't', 'by')
    if t[1] == ARGV[1] and t[2] == ARGV[3] then
        return 1
    end
    return redis.error_reply('EXISTS envelope id already used')
end
local n = (#ARGV - 3) / 2
local fields = {'t', ARGV[1], 'ms', ARGV[2], 'by', ARGV[3], 'n', n, 'k', 0, 'a', 0}
for i = 4, #ARGV, 2 do
    fields[#fields + 1] = 's:' .. ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', key, unpack(fields))
return 1
