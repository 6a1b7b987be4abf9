/* Placeholder: the http module is being written. */
#include "hongbao/http.h"
