/* libhongbao's core: everything that needs no event loop, no socket and no thread of its own. A
 * program that includes only this (or the core module headers) needs no libuv: link it with
 * `pkg-config --libs hongbao-core` or the CMake target hongbao::hongbao_core. */
#ifndef HONGBAO_CORE_H
#define HONGBAO_CORE_H

#include "hongbao/common.h"
#include "hongbao/version.h"
#include "hongbao/proto.h"
#include "hongbao/sched.h"
#include "hongbao/rand.h"
#include "hongbao/envelope.h"
#include "hongbao/envq.h"
#include "hongbao/counters.h"
#include "hongbao/aggregate.h"
#include "hongbao/netdev.h"
#include "hongbao/hist.h"
#include "hongbao/msgq.h"
#include "hongbao/idmap.h"
#include "hongbao/book.h"
#include "hongbao/journal.h"
#include "hongbao/fleet.h"
#include "hongbao/addr.h"
#include "hongbao/query.h"
#include "hongbao/ring.h"

#endif /* HONGBAO_CORE_H */
