"""pybpftrace: trace CPython from the outside through its USDT probes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pybpftrace")
except PackageNotFoundError:  # run from a checkout without installing
    __version__ = "unknown"
