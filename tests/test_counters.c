/* Placeholder test for the counters module. */
#include <check.h>
#include <stdlib.h>
int main(void)
{
    return EXIT_SUCCESS;
}
