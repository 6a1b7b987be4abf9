/* Placeholder test for the proto module. */
#include <check.h>
#include <stdlib.h>
int main(void)
{
    return EXIT_SUCCESS;
}
