-- The fleet's claim rule, judged atomically where the envelope lives.
-- KEYS[1]: the envelope's hash ({e:ID}); ARGV[1]: the claimant's user id.
-- The envelope holds s:<user> = the share split for each recipient at creation, g:<user> once
-- that share is granted, k = grants made, a = amount granted. The rule is the book's
-- (hongbao/book.h): a recipient's first claim takes its share, a repeat learns the same share,
-- anybody else gets nothing. Returns {result, amount}, result an HB_CLAIM_* code.
local GRANTED, REPEAT, NOT_RECIPIENT, NO_ENVELOPE = 0, 1, 2, 3
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {NO_ENVELOPE, 0}
end
local user = ARGV[1]
local granted = redis.call('HGET', KEYS[1], 'g:' .. user)
if granted then
    return {REPEAT, tonumber(granted)}
end
local share = redis.call('HGET', KEYS[1], 's:' .. user)
if not share then
    return {NOT_RECIPIENT, 0}
end
redis.call('HSET', KEYS[1], 'g:' .. user, share)
redis.call('HINCRBY', KEYS[1], 'k', 1)
redis.call('HINCRBY', KEYS[1], 'a', share)
return {GRANTED, tonumber(share)}
