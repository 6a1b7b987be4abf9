/* Placeholder: hb-audit is being written. */
int main(void)
{
    return 0;
}
