/* A build tool: writes libuv's error codes, names and messages as a header of plain constants
 * (HB_UV_ERRORS), so that hb_strerror and hb_err_name in the core name libuv's codes exactly as
 * libuv does without the core including <uv.h>. Usage: hb_gen_uv_errors OUTPUT_HEADER */
#include <stdio.h>
#include <uv.h>

/* text as a C string literal's contents (libuv's messages are plain ASCII; escape anyway). */
static void put_literal(FILE *f, const char *text)
{
    for (; *text != '\0'; text++) {
        if (*text == '"' || *text == '\\')
            fputc('\\', f);
        fputc(*text, f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hb_gen_uv_errors OUTPUT_HEADER\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "w");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f,
            "/* Generated at build time by tools/gen_uv_errors.c from libuv %s: do not edit. */\n"
            "#define HB_UV_ERRORS(XX) \\\n",
            uv_version_string());
#define HB_GEN_ENTRY_(name, text)                                                                  \
    fprintf(f, "    XX(%d, \"%s\", \"", UV_##name, #name);                                         \
    put_literal(f, text);                                                                          \
    fprintf(f, "\") \\\n");
    UV_ERRNO_MAP(HB_GEN_ENTRY_)
#undef HB_GEN_ENTRY_
    fprintf(f, "\n");
    return fclose(f) == 0 ? 0 : 1;
}
