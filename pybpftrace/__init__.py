"""pybpftrace: trace CPython from the outside through its USDT probes."""


def __getattr__(name: str) -> str:
    """__version__, read from the installed package's metadata when first asked for: importing
    importlib.metadata costs every command some 20 ms at its start, and only the output
    formats that name their exporter ask."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("pybpftrace")
    except PackageNotFoundError:  # run from a checkout without installing
        found = "unknown"
    globals()["__version__"] = found
    return found
