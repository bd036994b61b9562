import os

import pytest

from support import ALL_INTERPRETERS, WITH_FUNCTION_PROBES


@pytest.fixture(autouse=True)
def require_root():
    assert os.geteuid() == 0, "the end-to-end tests trace for real: run them as root (sudo make test)"


@pytest.fixture(params=WITH_FUNCTION_PROBES, ids=str)
def interpreter(request):
    """Each CPython with function probes: 3.9 and 3.15 from the matrix's chroots, 3.11 here."""
    request.param.prepare()
    return request.param


WITH_LINE_PROBE = [i for i in WITH_FUNCTION_PROBES if i.version <= (3, 11)]


@pytest.fixture(params=ALL_INTERPRETERS, ids=str)
def any_interpreter(request):
    """Each CPython of the matrix: 3.9, 3.13, 3.14 and 3.15 from its chroots, 3.11 here."""
    request.param.prepare()
    return request.param
