/*
 * A shared object without the tollgate_plugin symbol, for the tests:
 * loading it must fail with a message that names the file and the symbol.
 */
int not_a_tollgate_plugin(void);

int
not_a_tollgate_plugin(void)
{
	return 0;
}
