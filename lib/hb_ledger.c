/* Placeholder: the ledger module is being written. */
#include "hongbao/ledger.h"
