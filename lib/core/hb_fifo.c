/* A FIFO of fixed-size elements in a ring that doubles when full (hb_internal.h): what waits for
 * the journal in a SET of the local store, what a bucket holds from the fleet's budget. */
#include <stdlib.h>
#include <string.h>

#include "hb_internal.h"

int hb__fifo_push(hb__fifo_t *f, const void *elem)
{
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        unsigned char *n = malloc(cap * f->elem);
        if (n == NULL)
            return HB_ENOMEM;
        for (size_t i = 0; i < f->count; i++)
            memcpy(n + i * f->elem, hb__fifo_at(f, i), f->elem);
        free(f->buf);
        f->buf = n;
        f->head = 0;
        f->cap = cap;
    }
    memcpy(f->buf + ((f->head + f->count) % f->cap) * f->elem, elem, f->elem);
    f->count++;
    return 0;
}

void hb__fifo_pop(hb__fifo_t *f, void *out)
{
    if (out != NULL)
        memcpy(out, f->buf + f->head * f->elem, f->elem);
    f->head = (f->head + 1) % f->cap;
    f->count--;
}

void hb__fifo_free(hb__fifo_t *f)
{
    free(f->buf);
    f->buf = NULL;
    f->head = f->count = f->cap = 0;
}
