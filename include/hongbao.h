/* libhongbao: the umbrella header. Include this, or the module headers you need. The core's
 * headers (hongbao/core.h) need no libuv; the runtime's (server, client, monitor, http,
 * reporter, registry, ledger) include <uv.h>. */
#ifndef HONGBAO_H
#define HONGBAO_H

#include "hongbao/core.h"
#include "hongbao/http.h"
#include "hongbao/registry.h"
#include "hongbao/reporter.h"
#include "hongbao/ledger.h"
#include "hongbao/server.h"
#include "hongbao/client.h"
#include "hongbao/monitor.h"
#include "hongbao/netstat.h"
#include "hongbao/fleetaudit.h"

#endif /* HONGBAO_H */
