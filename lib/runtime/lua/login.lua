-- A user logged in on an instance: the fleet-wide registry says so, and "the newer login wins".
-- KEYS[1]: the user's registry entry ({u:USER}, a hash: i the instance holding the user, g the
-- logins so far). ARGV[1]: the instance. The logins of one user are ordered by this script: the
-- last to run is the newer. Returns {this login's number, the instance that held the user before
-- ("" if none)}; that instance, if another, is told to check (its inbox) and closes its
-- connection of the user unless the registry names it again by then.
local g = redis.call('HINCRBY', KEYS[1], 'g', 1)
local before = redis.call('HGET', KEYS[1], 'i') or ''
redis.call('HSET', KEYS[1], 'i', ARGV[1])
return {g, before}
