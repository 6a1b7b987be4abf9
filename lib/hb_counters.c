/* Placeholder: the counters module is being written. */
#include "hongbao/counters.h"
