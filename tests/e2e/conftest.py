import os

import pytest


@pytest.fixture(autouse=True)
def require_root():
    assert os.geteuid() == 0, "the end-to-end tests trace for real: run them as root (sudo make test)"
