/* A program embedding CPython through libpython: the probes live in the shared library. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SCRIPT\n", argv[0]);
		return 2;
	}
	FILE *script = fopen(argv[1], "r");
	if (!script) {
		perror(argv[1]);
		return 2;
	}
	Py_Initialize();
	int failed = PyRun_SimpleFileEx(script, argv[1], 1);
	return Py_FinalizeEx() < 0 || failed ? 1 : 0;
}
