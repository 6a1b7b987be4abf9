/* hb-client: the example load-generating client. A thin consumer of libhongbao; this version has only --help and --version. */
#include <hongbao.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: hb-client [--help] [--version]\n"
                 "  --help       show this help and exit\n"
                 "  --version    print the libhongbao version and exit\n"
                 "\nthe example load-generating client (libhongbao %s).\n"
                 "This version of hb-client only prints help: the runtime is not built yet.\n",
            hb_version_string());
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("hb-client (libhongbao) %s\n", hb_version_string());
            return 0;
        }
        fprintf(stderr, "hb-client: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    fprintf(stderr, "hb-client: not implemented yet in libhongbao %s; see --help\n",
            hb_version_string());
    return 1;
}
