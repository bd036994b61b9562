import os

import pytest


@pytest.fixture(autouse=True)
def require_root():
    assert os.geteuid() == 0, "the stress suite traces for real: run it as root (sudo make stress)"
