/* Placeholder: the monitor module is being written. */
#include "hongbao/monitor.h"
