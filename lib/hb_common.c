/* Error messages and version queries shared by every module. */
#include "hongbao/common.h"

#include <stdio.h>

#include "hb_internal.h"

const char *hb_strerror(int err)
{
    switch (err) {
#define HB_STRERROR_CASE_(name, value, text)                                                       \
    case HB_##name:                                                                                \
        return text;
        HB_ERRNO_MAP(HB_STRERROR_CASE_)
#undef HB_STRERROR_CASE_
#define HB_UV_STRERROR_CASE_(name, text)                                                           \
    case UV_##name:                                                                                \
        return text;
        UV_ERRNO_MAP(HB_UV_STRERROR_CASE_)
#undef HB_UV_STRERROR_CASE_
    default:
        /* Not uv_strerror(): for unknown codes it allocates a string nobody frees. */
        return "unknown error";
    }
}

const char *hb_err_name(int err)
{
    switch (err) {
#define HB_ERR_NAME_CASE_(name, value, text)                                                       \
    case HB_##name:                                                                                \
        return #name;
        HB_ERRNO_MAP(HB_ERR_NAME_CASE_)
#undef HB_ERR_NAME_CASE_
#define HB_UV_ERR_NAME_CASE_(name, text)                                                           \
    case UV_##name:                                                                                \
        return #name;
        UV_ERRNO_MAP(HB_UV_ERR_NAME_CASE_)
#undef HB_UV_ERR_NAME_CASE_
    default:
        return "UNKNOWN";
    }
}

unsigned int hb_version(void)
{
    return HB_VERSION_HEX;
}

const char *hb_version_string(void)
{
    return HB_VERSION_STRING;
}

void hb__vlogf(hb_log_cb log, void *arg, const char *fmt, va_list ap)
{
    if (log == NULL)
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    log(arg, line);
}
