-- The generator puts shake envelopes into one partition of the budget.
-- KEYS[1]: the partition's queue (list of "index:amount"); KEYS[2]: its counters (hash).
-- ARGV: the generator's name, the plan's epoch (0: none), then index, amount pairs, indexes rising (an envelope's index is
-- its place in the shake id space, hongbao/envelope.h). An index not above the last this
-- generator put here is a retry's: skipped, so a put whose answer was lost can be sent again
-- (each generator's ids only go up). The envelopes of a plan are counted per epoch (e:<epoch>),
-- so that a generator taking over learns how many the plan has (gen_made.lua). Returns how many
-- were added.
local field = 'last:' .. ARGV[1]
local last = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
local added, amount, entries = 0, 0, {}
for i = 3, #ARGV, 2 do
    local idx = tonumber(ARGV[i])
    if idx > last then
        entries[#entries + 1] = ARGV[i] .. ':' .. ARGV[i + 1]
        amount = amount + tonumber(ARGV[i + 1])
        added = added + 1
        last = idx
    end
end
if added > 0 then
    redis.call('RPUSH', KEYS[1], unpack(entries))
    redis.call('HINCRBY', KEYS[2], 'g', added)
    redis.call('HINCRBY', KEYS[2], 'ga', amount)
    redis.call('HSET', KEYS[2], field, last)
    if ARGV[2] ~= '0' then
        redis.call('HINCRBY', KEYS[2], 'e:' .. ARGV[2], added)
    end
end
return added
