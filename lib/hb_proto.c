/* Placeholder: the proto module is being written. */
#include "hongbao/proto.h"
