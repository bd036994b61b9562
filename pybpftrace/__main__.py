"""`python -m pybpftrace`, and the pybpftrace command: the tracer says it is one (tracers.py)
before the rest is imported, so that other tracers leave out as little of its start as they
can."""

from .tracers import announce


def run() -> None:
    announce()
    from .cli import main

    main()


if __name__ == "__main__":
    run()
