/* libhongbao common definitions: export macro, error codes, version queries, the log callback.
 * Every other public header includes this one. Part of the core: it needs no libuv. */
#ifndef HONGBAO_COMMON_H
#define HONGBAO_COMMON_H

#include <errno.h>

#include "hongbao/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HB_EXTERN marks the public API; everything else in the library is hidden. */
#if defined(HB_BUILDING_LIBRARY) && defined(__GNUC__)
#define HB_EXTERN __attribute__((visibility("default")))
#else
#define HB_EXTERN /* nothing */
#endif

/* Errors are negative ints. System and argument errors are negative errno values, the very numbers
 * of libuv's UV_E* codes on Unix (HB_EINVAL == UV_EINVAL, ...), so a runtime caller may compare
 * with either name and a core-only program needs no libuv; the library's own errors are the HB_E*
 * codes below, in the range -30000..-30999 that neither errno nor libuv uses. As in libuv: when a
 * function that takes a callback returns an error, the callback is never called. */
#define HB_EINVAL    (-EINVAL)
#define HB_ENOMEM    (-ENOMEM)
#define HB_ENOBUFS   (-ENOBUFS)
#define HB_EEXIST    (-EEXIST)
#define HB_ENOENT    (-ENOENT)
#define HB_EBUSY     (-EBUSY)
#define HB_EIO       (-EIO)
#define HB_ENOTSUP   (-ENOTSUP)
#define HB_ETIMEDOUT (-ETIMEDOUT)
#define HB_EAGAIN    (-EAGAIN)
#define HB_ECANCELED (-ECANCELED)
#define HB_EPERM     (-EPERM)
#define HB_ERANGE    (-ERANGE)
#define HB_ERRNO_MAP(XX)                                                                           \
    XX(EFRAMESHORT, -30001, "frame length is below the 12-byte header")                            \
    XX(EFRAMELONG, -30002, "frame length is above the maximum frame size")                         \
    XX(EBADCMD, -30003, "unknown command id")                                                      \
    XX(EBADSIZE, -30004, "payload size does not match the command")                                \
    XX(EFULL, -30005, "queue is full")                                                             \
    XX(EEMPTY, -30006, "queue is empty")                                                           \
    XX(EAMOUNT, -30007, "amount is too small to give every recipient at least 1")                  \
    XX(EREPORT, -30008, "malformed counter report")                                                \
    XX(EIDLE, -30009, "nothing is scheduled: the rate is 0")                                       \
    XX(ENOENVELOPE, -30010, "no such envelope (unknown or expired)")                               \
    XX(ENOTRECIPIENT, -30011, "the user is not a recipient of this envelope")                      \
    XX(ECLAIMED, -30012, "the user has already claimed this envelope")                             \
    XX(ENOTLOGGEDIN, -30013, "the connection has not logged in")                                   \
    XX(EOFFLINE, -30014, "the user is not online")                                                 \
    XX(ECORRUPT, -30015, "journal record corrupt (CRC or framing) before the end of the journal")  \
    XX(EIDSPACE, -30016, "the envelope id space is used up: no more envelopes of that kind")       \
    XX(ESTORE, -30017, "the money store cannot make anything durable now: try again later")

typedef enum {
#define HB_ERRNO_ENUM_(name, value, text) HB_##name = (value),
    HB_ERRNO_MAP(HB_ERRNO_ENUM_)
#undef HB_ERRNO_ENUM_
} hb_errno_t;

/* A static, human-readable message for an error code from this library (HB_E*, or any of libuv's
 * UV_E*, worded as libuv words them). Unknown codes give "unknown error". Never NULL. */
HB_EXTERN const char *hb_strerror(int err);

/* The code's symbolic name ("EFRAMELONG", "EINVAL"), static, never NULL; "UNKNOWN" for
 * codes neither this library nor libuv defines. */
HB_EXTERN const char *hb_err_name(int err);

/* The library's version as 0xMMmmpp, for comparison with HB_VERSION_HEX at run time. */
HB_EXTERN unsigned int hb_version(void);

/* The library's version as "MAJOR.MINOR.PATCH", static. */
HB_EXTERN const char *hb_version_string(void);

/* A log callback, as every runtime object's options take one: one line of text (no trailing
 * newline, valid during the call only) and the object's log_arg. Called from the thread noted by
 * each object; it must not call back into the object that logs. */
typedef void (*hb_log_cb)(void *arg, const char *line);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_COMMON_H */
