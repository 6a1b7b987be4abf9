/* Print every claim in a claim journal as "envelope user amount", one a line: what the crash test
 * compares with the claims its clients saw acknowledged. Usage: journal_claims JOURNAL_FILE */
#include <hongbao.h>
#include <stdio.h>
#include <stdlib.h>

static int print_claim(void *arg, const hb_journal_record_t *r, size_t offset)
{
    (void)arg;
    (void)offset;
    if (r->type == HB_JOURNAL_CLAIM)
        printf("%u %u %u\n", r->envelope_id, r->user, r->amount);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: journal_claims JOURNAL_FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "journal_claims: cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    hb_journal_scan_t sr;
    int r = hb_journal_scan(buf, (size_t)n, print_claim, NULL, &sr);
    free(buf);
    if (r != 0 && r != HB_JOURNAL_TORN) {
        fprintf(stderr, "journal_claims: %s\n", sr.errstr);
        return 1;
    }
    return 0;
}
