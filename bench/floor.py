"""The floor tracer: pybpftrace's own program generation and uprobe placements, with a BPF
program whose handlers do nothing (bench/floor.bpf.c). What a mode costs above the floor is
then the mode's own work, not the price of the probes themselves.

    python -m bench.floor [--count] [--entries] [--clock] [--route eval-frame] [--hook-only] PID

It says `floor: tracing ...` on stderr once attached, and stops when the target exits (or on
SIGINT or SIGTERM). With --count the handlers count the hits of each probe, and it ends with
`floor: E entries, R returns` on stdout. With --entries it probes function__entry only, the
floor of the modes that count entries (top). With --clock each handler reads the clock once,
as a tracer that times calls must on every entry and return. With --route eval-frame the
probes are the eval-frame route's (_PyEval_EvalFrameDefault's entry and returns), with the
interpreter's eval_frame hook set as pybpftrace --eval-hook sets it; with --hook-only too, it
sets the hook and probes nothing: what the hook alone costs the target.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from pathlib import Path

from pybpftrace.eval_frame import EVAL_FRAME_ROUTE
from pybpftrace.hook import Hooks
from pybpftrace.program import CodeProbe, Handler, ProgramSpec
from pybpftrace.routes import CallRoutes, CallTargets
from pybpftrace.sampling import process_interpreter
from pybpftrace.session import Session
from pybpftrace.target import EVAL_FRAME, TargetOptions, Targets, find_targets
from pybpftrace.tools import NEEDED_PROBES
from pybpftrace.tools.stack import SPEC as STACK_SPEC

SOURCE = Path(__file__).resolve().parent / "floor.bpf.c"
HANDLERS = {"function__entry": "on_entry", "function__return": "on_return"}
HIT_ENTRY, HIT_RETURN = 0, 1  # enum hit in floor.bpf.c


def floor_spec(entries_only: bool = False, route: str = "usdt") -> ProgramSpec:
    """stack's probes and markers of the route, each given a handler that does nothing: the
    same placements as `pybpftrace stack`, the same generated argument readers."""
    if route == EVAL_FRAME_ROUTE:
        probes = [CodeProbe(EVAL_FRAME, Handler("on_entry", 3), route=EVAL_FRAME_ROUTE)]
        if not entries_only:
            probes.append(CodeProbe(EVAL_FRAME, Handler("on_return", 3), returns=True, route=EVAL_FRAME_ROUTE))
        return ProgramSpec(str(SOURCE), (), tuple(probes))
    probes = ("function__entry",) if entries_only else tuple(HANDLERS)
    markers = tuple(CodeProbe(p.place, Handler("on_marker", p.handler.arguments), route=p.route, needed=p.needed)
                    for p in STACK_SPEC.code_probes if p.route == "usdt")
    return ProgramSpec(
        str(SOURCE),  # absolute, so program.bpf_dir() / SOURCE is SOURCE itself
        tuple((probe, Handler(HANDLERS[probe], h.arguments)) for probe, h in STACK_SPEC.handlers if probe in probes),
        markers,
    )


def wait_for_exit(pid: int) -> None:
    """Until the target exits, or SIGINT or SIGTERM."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    pidfd = os.pidfd_open(pid)
    try:
        select.select([pidfd], [], [])
    except KeyboardInterrupt:
        pass
    finally:
        os.close(pidfd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", action="store_true", help="count the hits of each probe")
    parser.add_argument("--entries", action="store_true", help="probe function__entry only")
    parser.add_argument("--clock", action="store_true", help="read the clock in each handler")
    parser.add_argument("--route", choices=("usdt", EVAL_FRAME_ROUTE), default="usdt")
    parser.add_argument("--hook-only", action="store_true", help="set the eval_frame hook, probe nothing")
    parser.add_argument("pid", type=int)
    options = parser.parse_args(argv)
    if options.hook_only:
        return hook_only(options.pid)
    # pybpftrace's own Session: the same placements, semaphores and switch as its tools
    defines = {name: 1 for name, wanted in (("COUNT_HITS", options.count), ("READ_CLOCK", options.clock)) if wanted}
    calls = None
    if options.route == EVAL_FRAME_ROUTE:
        walked = process_interpreter(options.pid)
        targets = Targets({options.pid: [walked.binary]})
        calls = CallRoutes(CallTargets(targets, {options.pid: walked}, {walked.binary}, [options.pid]))
    else:
        targets = find_targets(TargetOptions(pids=[options.pid]), "stack", NEEDED_PROBES)
    session = Session(floor_spec(options.entries, options.route), targets, None, None, defines=defines, calls=calls)
    try:
        session.attach()
        session.announce()
        print(f"floor: tracing PID {options.pid}", file=sys.stderr, flush=True)
        wait_for_exit(options.pid)
        if options.count:
            hits = session.program.table("hits")
            print(f"floor: {hits.sum(HIT_ENTRY).value} entries, {hits.sum(HIT_RETURN).value} returns", flush=True)
    finally:
        session.close()
        session.release_signals()
    return 0


def hook_only(pid: int) -> int:
    """The eval_frame hook set, nothing probed, until the target exits."""
    hooks = Hooks()
    hooks.set(pid, process_interpreter(pid))
    try:
        print(f"floor: tracing PID {pid} (the eval_frame hook alone)", file=sys.stderr, flush=True)
        wait_for_exit(pid)
    finally:
        hooks.release()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
