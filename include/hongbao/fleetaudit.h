/* The fleet's audit: a fleet's books in Redis Cluster read and checked (docs/fleet.md), from an
 * event loop. Every send-envelope whose id was ever reserved is read and judged by the book's
 * validation rule and its counters (hongbao/fleet.h), and every partition of the shake budget
 * balanced. Read-only. Needs a library built with hiredis (HONGBAO_REDIS). */
#ifndef HONGBAO_FLEETAUDIT_H
#define HONGBAO_FLEETAUDIT_H

#include <stdint.h>
#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/fleet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hb_fleet_audit_result {
    /* send-envelopes */
    uint64_t envelopes;       /* found (ids reserved but never used are not envelopes) */
    uint64_t issued_amount;   /* their totals */
    uint64_t grants;          /* shares granted */
    uint64_t granted_amount;  /* and their sum */
    uint32_t highest_send_id; /* the send id space's mark: ids up to it were reserved */
    /* the shake budget, summed over its partitions */
    hb_fleet_partition_t budget;
    unsigned partitions;
    /* problems: each a violation; the first few described */
    uint64_t violations;
    char first[4][160];
} hb_fleet_audit_result_t;

/* Called once, on the loop, when the audit ends: err 0 with the result (violations 0: the books
 * balance), or an error when Redis could not be read (HB_ESTORE, UV_ETIMEDOUT, ...; r then holds
 * what was read so far). r is valid during the call only. */
typedef void (*hb_fleet_audit_cb)(int err, const hb_fleet_audit_result_t *r, void *arg);

/* Audit the fleet whose cluster `seeds` names ("host:port[,host:port...]") on loop. Returns 0
 * (cb will be called), UV_EINVAL, UV_ENOMEM, UV_ENOTSUP (built without hiredis); on error cb is
 * never called. log (may be NULL) hears the cluster client's lines. */
HB_EXTERN int hb_fleet_audit(uv_loop_t *loop, const char *seeds, hb_log_cb log, void *log_arg,
                             hb_fleet_audit_cb cb, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_FLEETAUDIT_H */
