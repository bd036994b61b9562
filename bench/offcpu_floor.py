"""The off-CPU floor (bench/offcpu_floor.bpf.c): empty programs on the tracepoints that
`profile --off-cpu` takes, held until the target exits.

    python bench/offcpu_floor.py PID

It says `floor: tracing` on stderr once attached, and stops when the target exits (or on
SIGINT or SIGTERM)."""

from __future__ import annotations

import sys
from pathlib import Path

from floor import wait_for_exit  # run by path: bench/ is first on sys.path

SOURCE = Path(__file__).resolve().parent / "offcpu_floor.bpf.c"


def main(pid: int) -> int:
    from bcc import BPF  # Debian's python3-bpfcc, as pybpftrace's own

    program = BPF(src_file=str(SOURCE).encode())  # bcc attaches the tracepoints' programs itself
    print(f"floor: tracing PID {pid}", file=sys.stderr, flush=True)
    try:
        wait_for_exit(pid)
    finally:
        program.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
