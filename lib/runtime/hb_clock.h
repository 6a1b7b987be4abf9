/* The runtime's one wall clock: Unix time read with uv_gettimeofday. Internal, not installed. */
#ifndef HB_CLOCK_H
#define HB_CLOCK_H

#include <stdint.h>

#include <uv.h>

/* Unix microseconds now; 0 when the clock cannot be read. */
static inline uint64_t hb__wall_us(void)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0 || tv.tv_sec < 0)
        return 0;
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* Unix milliseconds now, shaped as the now_ms options' clock (arg unused): their default. */
static inline uint64_t hb__wall_ms(void *arg)
{
    (void)arg;
    return hb__wall_us() / 1000;
}

#endif /* HB_CLOCK_H */
