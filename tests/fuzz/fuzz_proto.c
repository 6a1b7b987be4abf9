/* libFuzzer target for the proto module: the parser, the decoder and encoder, and the framer fed
 * in pieces, all checked against one another on the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* What the parser alone finds in the input: whole frames from the start, then how it ends. */
#define FUZZ_MAX_FRAMES 4096
typedef struct reference {
    size_t offsets[FUZZ_MAX_FRAMES + 1];
    size_t nframes;
    size_t consumed; /* bytes in whole frames */
    int end;         /* 0 (need more, or input exhausted) or the parser's error */
} reference_t;

/* Decode a frame, encode it again, and check the bytes are the ones on the wire. */
static void check_round_trip(const hb_frame_t *f, const uint8_t *wire)
{
    hb_msg_t m;
    uint8_t again[HB_FRAME_MAX];
    FUZZ_CHECK(hb_msg_decode(f, &m) == 0);
    FUZZ_CHECK(hb_msg_encoded_len(&m) == f->length);
    FUZZ_CHECK(hb_msg_encode(&m, again, sizeof again) == f->length);
    FUZZ_CHECK(memcmp(again, wire, f->length) == 0);
    FUZZ_CHECK(hb_cmd_name(f->cmd) != NULL);
}

static void reference_parse(const uint8_t *data, size_t size, reference_t *ref)
{
    size_t off = 0;
    ref->nframes = 0;
    ref->end = 0;
    while (ref->nframes < FUZZ_MAX_FRAMES) {
        hb_frame_t f;
        int rc = hb_frame_parse(data + off, size - off, &f);
        if (rc <= 0) {
            ref->end = rc;
            FUZZ_CHECK(rc == 0 || rc == HB_EFRAMESHORT || rc == HB_EFRAMELONG || rc == HB_EBADCMD ||
                       rc == HB_EBADSIZE);
            /* Errors show from the first 4 bytes (the length's from 2), need-more never at 4
             * or more bytes of a bad header. */
            if (rc == 0 && size - off >= 4) {
                FUZZ_CHECK(hb_get_u16(data + off) > size - off);
            }
            break;
        }
        FUZZ_CHECK((size_t)rc <= size - off && rc >= HB_FRAME_HEADER && rc <= HB_FRAME_MAX);
        FUZZ_CHECK(f.length == rc && f.payload == data + off + HB_FRAME_HEADER);
        FUZZ_CHECK(f.payload_len == (size_t)rc - HB_FRAME_HEADER);
        check_round_trip(&f, data + off);
        ref->offsets[ref->nframes++] = off;
        off += (size_t)rc;
    }
    ref->offsets[ref->nframes] = off;
    ref->consumed = off;
}

/* The framer's side: frames must match the reference one for one. */
typedef struct follow {
    const uint8_t *data;
    const reference_t *ref;
    size_t next;
    size_t stop_at;       /* stop (return -1) when this frame arrives, SIZE_MAX for never */
    const uint8_t *piece; /* the piece being fed, and where it starts in data */
    size_t piece_off, piece_len;
} follow_t;

static int follow_cb(void *arg, const hb_frame_t *f)
{
    follow_t *fo = arg;
    FUZZ_CHECK(fo->next < fo->ref->nframes);
    size_t off = fo->ref->offsets[fo->next];
    FUZZ_CHECK(f->length == fo->ref->offsets[fo->next + 1] - off);
    check_round_trip(f, fo->data + off);
    /* Zero copy exactly when the frame lies wholly inside the piece being fed. */
    uintptr_t p = (uintptr_t)f->payload, lo = (uintptr_t)fo->piece;
    if (off >= fo->piece_off && off + f->length <= fo->piece_off + fo->piece_len)
        FUZZ_CHECK(p == lo + (off - fo->piece_off) + HB_FRAME_HEADER);
    else
        FUZZ_CHECK(p < lo || p >= lo + fo->piece_len);
    return fo->next++ == fo->stop_at ? -1 : 0;
}

/* Feed data to a framer in pieces of the given sizes (cycled; none means all at once), each
 * piece copied to a heap block of its exact size so that a read past it is caught. */
static void framer_run(const uint8_t *data, size_t size, const reference_t *ref,
                       const uint8_t *sizes, size_t nsizes, size_t stop_at)
{
    hb_framer_t fr;
    follow_t fo = {data, ref, 0, stop_at, NULL, 0, 0};
    size_t off = 0, k = 0;
    int rc = 0;

    hb_framer_init(&fr);
    while (off < size && rc == 0) {
        size_t n = nsizes == 0 ? size - off : (size_t)sizes[k++ % nsizes] + 1;
        if (n > size - off)
            n = size - off;
        uint8_t *piece = malloc(n);
        FUZZ_CHECK(piece != NULL);
        memcpy(piece, data + off, n);
        fo.piece = piece;
        fo.piece_off = off;
        fo.piece_len = n;
        rc = hb_framer_feed(&fr, piece, n, follow_cb, &fo);
        free(piece);
        off += n;
    }

    if (stop_at < ref->nframes) {
        FUZZ_CHECK(rc == -1 && fo.next == stop_at + 1);
    } else if (ref->end < 0) {
        FUZZ_CHECK(rc == ref->end && fo.next == ref->nframes);
    } else if (ref->nframes == FUZZ_MAX_FRAMES) {
        FUZZ_CHECK(rc == 0 || rc == HB_EFRAMESHORT || rc == HB_EFRAMELONG || rc == HB_EBADCMD ||
                   rc == HB_EBADSIZE || rc == -1);
    } else {
        FUZZ_CHECK(rc == 0 && fo.next == ref->nframes);
        FUZZ_CHECK(hb_framer_pending(&fr) == size - ref->consumed);
    }
    if (rc < 0) {
        /* Failed: nothing held, and it stays failed. */
        FUZZ_CHECK(hb_framer_pending(&fr) == 0 && fr.big == NULL);
        FUZZ_CHECK(hb_framer_feed(&fr, data, size, follow_cb, &fo) == rc);
    }
    hb_framer_reset(&fr);
    FUZZ_CHECK(hb_framer_pending(&fr) == 0 && fr.big == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static reference_t ref; /* big; only one input runs at a time */

    reference_parse(data, size, &ref);

    /* All at once, then in pieces whose sizes (1..256) are the input's last bytes, read
     * backwards: the whole input is the stream, and its tail doubles as the cut pattern. */
    framer_run(data, size, &ref, NULL, 0, SIZE_MAX);
    if (size > 0) {
        framer_run(data, size, &ref, NULL, 0, data[0] % 4);
        size_t nsizes = size < 16 ? size : 16;
        uint8_t sizes[16];
        for (size_t i = 0; i < nsizes; i++)
            sizes[i] = (uint8_t)(data[size - 1 - i] % 64);
        framer_run(data, size, &ref, sizes, nsizes, SIZE_MAX);
        /* Byte by byte, the hardest cut, with a callback that stops at some frame. */
        uint8_t one = 0;
        framer_run(data, size, &ref, &one, 1, data[0] % 4);
    }
    return 0;
}
