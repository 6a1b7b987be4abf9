/* libhongbao: the umbrella header. Include this, or the module headers you need. */
#ifndef HONGBAO_H
#define HONGBAO_H

#include "hongbao/common.h"
#include "hongbao/version.h"
#include "hongbao/proto.h"
#include "hongbao/sched.h"
#include "hongbao/rand.h"
#include "hongbao/envelope.h"
#include "hongbao/envq.h"
#include "hongbao/counters.h"
#include "hongbao/hist.h"
#include "hongbao/http.h"
#include "hongbao/msgq.h"
#include "hongbao/registry.h"
#include "hongbao/book.h"
#include "hongbao/reporter.h"
#include "hongbao/ledger.h"
#include "hongbao/server.h"
#include "hongbao/client.h"
#include "hongbao/monitor.h"

#endif /* HONGBAO_H */
