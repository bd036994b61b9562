import os

import pytest

from support import (
    ALL_INTERPRETERS,
    CALL_ROUTES,
    EVAL_FRAME,
    PYENV_MINORS,
    PYENV_ROUTES,
    WITH_FUNCTION_PROBES,
    CallRoute,
    pyenv_interpreter,
)


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


@pytest.fixture(params=[*ALL_INTERPRETERS, *PYENV_MINORS], ids=lambda i: str(i) if hasattr(i, "suite") else f"pyenv-{i[0]}.{i[1]}")
def every_interpreter(request):
    """Each CPython the frame walker reads: the matrix's and this machine's pyenv builds."""
    if isinstance(request.param, tuple):
        found = pyenv_interpreter(request.param)
        if found is None:
            pytest.skip(f"no pyenv build of {request.param[0]}.{request.param[1]} on this machine")
        return found
    request.param.prepare()
    return request.param


@pytest.fixture(params=[*CALL_ROUTES, *PYENV_ROUTES], ids=lambda r: str(r) if isinstance(r, CallRoute) else f"pyenv-{r[0]}.{r[1]}-{EVAL_FRAME}")
def call_route(request):
    """Each interpreter by each route that follows its calls: the matrix's, and pyenv's 3.12
    and 3.13 (no probes at all) by the eval-frame route where this machine has them."""
    if isinstance(request.param, tuple):
        found = pyenv_interpreter(request.param)
        if found is None:
            pytest.skip(f"no pyenv build of {request.param[0]}.{request.param[1]} on this machine")
        return CallRoute(found, EVAL_FRAME)
    request.param.interpreter.prepare()
    return request.param
