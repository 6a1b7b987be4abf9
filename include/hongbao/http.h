/* Placeholder: the HTTP control-endpoint module is being written. */
#ifndef HONGBAO_HTTP_H
#define HONGBAO_HTTP_H
#include "hongbao/common.h"
#endif
