/* Placeholder: the sched module is being written. */
#include "hongbao/sched.h"
