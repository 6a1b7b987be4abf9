/* The fleet's Lua scripts, run by Redis where their keys live (lib/runtime/lua/: each file says its
 * keys, arguments and answer; cmake/FleetScripts.cmake makes them these strings).
 *
 * The data they keep (P: the prefix "hb"; {tag}: the cluster hash tag, so that one script's keys
 * share a slot):
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

/* The keys above, in one place for the store and the audit (printf formats, fixed names). */
#define HB_FLEET_KEY_ENVELOPE "hb:{e:%u}" /* a send-envelope's id */
#define HB_FLEET_KEY_PARTITION                                                                     \
    "hb:{b:%u}:%s" /* partition, then q, c, z, o, or l: (a lease's prefix) */
#define HB_FLEET_KEY_USER   "hb:{u:%u}"
#define HB_FLEET_KEY_INBOX  "hb:{i:%s}:in" /* an instance's name */
#define HB_FLEET_KEY_CURSOR "hb:{i:%s}:cur"
#define HB_FLEET_KEY_IDS    "hb:{ids}"
#define HB_FLEET_KEY_PLAN   "hb:{gen}"
#define HB_FLEET_KEY_LEASE  "hb:{gen}:lease"
/* The budget's partitions: every instance and the audit must agree (a partition's bitmap is
 * indexed by envelope index / partitions). */
#define HB_FLEET_PARTITIONS 16

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
