/* Placeholder test for the envq module. */
#include <check.h>
#include <stdlib.h>
int main(void)
{
    return EXIT_SUCCESS;
}
