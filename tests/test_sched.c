/* Placeholder test for the sched module. */
#include <check.h>
#include <stdlib.h>
int main(void)
{
    return EXIT_SUCCESS;
}
