/* Placeholder: the ledger module is being written. */
#ifndef HONGBAO_LEDGER_H
#define HONGBAO_LEDGER_H
#include "hongbao/common.h"
#endif
