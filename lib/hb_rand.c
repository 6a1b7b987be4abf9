/* Placeholder: the rand module is being written. */
#include "hongbao/rand.h"
