"""What every workload shares: announce readiness, wait for the go line (so that tracers
attach first), run the work timed with perf_counter, print the seconds, exit."""

import sys
import time
from typing import Callable


def timed(work: Callable[[int], object]) -> None:
    """Run work(size), size from argv[1]; size 0 skips the work, so that a run with size 0
    counts every probe hit of a run except the work's own."""
    size = int(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    if size:
        work(size)
    print(f"{time.perf_counter() - start:.6f}", flush=True)
