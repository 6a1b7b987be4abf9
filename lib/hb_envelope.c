/* Placeholder: the envelope module is being written. */
#include "hongbao/envelope.h"
