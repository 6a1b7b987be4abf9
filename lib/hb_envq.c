/* Placeholder: the envq module is being written. */
#include "hongbao/envq.h"
