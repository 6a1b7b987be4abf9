/* The fleet's Lua scripts, run by Redis where their keys live (lib/runtime/lua/: each file says its
 * keys, arguments and answer; cmake/FleetScripts.cmake makes them these strings).
 *
 * The data they keep (prefix P, "hb" by default; {tag}: the cluster hash tag, so that one
 * script's keys share a slot):
 *   P:{e:ID}          a send-envelope: t total, n recipients, ms created, by creator, s:<user> the
 *                     share split for each recipient, g:<user> once granted, k grants, a granted
 *   P:{ids}           id high-water marks, one field a space (reserve.lua)
 *   P:{b:N}:q         budget partition N: shake envelopes "index:amount" not yet drawn
 *   P:{b:N}:c         its counters: g/ga generated, d drawn, o/oa handed out, x/xa expired,
 *                     r returned, late, dup, last:<generator> (the highest index it put)
 *   P:{b:N}:z         its leases: instance -> deadline (unix ms)
 *   P:{b:N}:l:<inst>  an instance's lease: index -> amount (and :d, its last draw)
 *   P:{b:N}:o         its bitmap of envelopes handed out (bit index / partitions)
 *   P:{u:USER}        the fleet's registry: i the instance holding the user, g its logins
 *   P:{gen}           the fleet's shake plan: qps, total, start (Redis ms), epoch
 *   P:{gen}:lease     the instance that is the fleet's generator now (expires)
 * An envelope of the budget is always in exactly one of: queued, leased, handed out, expired. */
#ifndef HB_FLEET_LUA_H
#define HB_FLEET_LUA_H

extern const char hb__lua_claim[];
extern const char hb__lua_send_create[];
extern const char hb__lua_reserve[];
extern const char hb__lua_budget_put[];
extern const char hb__lua_budget_draw[];
extern const char hb__lua_budget_report[];
extern const char hb__lua_budget_return[];
extern const char hb__lua_budget_audit[];
extern const char hb__lua_login[];
extern const char hb__lua_logout[];
extern const char hb__lua_gen_plan[];
extern const char hb__lua_gen_lease[];

#endif /* HB_FLEET_LUA_H */
