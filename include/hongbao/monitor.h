/* Placeholder: the monitor module is being written. */
#ifndef HONGBAO_MONITOR_H
#define HONGBAO_MONITOR_H
#include "hongbao/common.h"
#endif
