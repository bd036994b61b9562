import os

import pytest

from support import WITH_FUNCTION_PROBES


@pytest.fixture(autouse=True)
def require_root():
    assert os.geteuid() == 0, "the end-to-end tests trace for real: run them as root (sudo make test)"


@pytest.fixture(params=WITH_FUNCTION_PROBES, ids=str)
def interpreter(request):
    """Each CPython with function probes: 3.9 and 3.15 from the matrix's chroots, 3.11 here."""
    request.param.prepare()
    return request.param
