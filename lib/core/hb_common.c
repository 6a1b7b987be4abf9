/* Error messages and version queries shared by every module. */
#include "hongbao/common.h"

#include <stddef.h>
#include <stdio.h>

#include "hb_internal.h"
#include "hb_uv_errors.h"

/* libuv's codes, names and messages, generated at build time (tools/gen_uv_errors.c). */
static const struct {
    int code;
    const char *name, *text;
} uv_errors[] = {
#define HB_UV_ENTRY_(code, name, text) {code, name, text},
    HB_UV_ERRORS(HB_UV_ENTRY_)
#undef HB_UV_ENTRY_
};

static int uv_error_index(int err)
{
    for (size_t i = 0; i < sizeof uv_errors / sizeof uv_errors[0]; i++)
        if (uv_errors[i].code == err)
            return (int)i;
    return -1;
}

const char *hb_strerror(int err)
{
    switch (err) {
#define HB_STRERROR_CASE_(name, value, text)                                                       \
    case HB_##name:                                                                                \
        return text;
        HB_ERRNO_MAP(HB_STRERROR_CASE_)
#undef HB_STRERROR_CASE_
    default: {
        int i = uv_error_index(err);
        return i >= 0 ? uv_errors[i].text : "unknown error";
    }
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
    default: {
        int i = uv_error_index(err);
        return i >= 0 ? uv_errors[i].name : "UNKNOWN";
    }
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

void hb__vlogf_line(hb_log_cb log, void *arg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(log, arg, fmt, ap);
    va_end(ap);
}
