/* Placeholder test for the http module. */
#include <check.h>
#include <stdlib.h>
int main(void)
{
    return EXIT_SUCCESS;
}
