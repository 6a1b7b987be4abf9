-- A user's connection left an instance. KEYS[1]: the user's registry entry; ARGV: the instance,
-- the login's number (login.lua's answer). The entry is cleared only if it is still that login's:
-- a newer login, anywhere, is never undone by an older one's logout. Returns 1 when cleared.
local now = redis.call('HMGET', KEYS[1], 'i', 'g')
if now[1] == ARGV[1] and now[2] == ARGV[2] then
    redis.call('HDEL', KEYS[1], 'i')
    return 1
end
return 0
