"""Known imports: one nested in another, and one that is not found."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules"))


def load():  # def load
    import outer_module  # noqa: F401  # load imports
    try:
        import no_such_module_pybpftrace  # noqa: F401
    except ImportError:
        print("missing")


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    load()
