"""What the commands that follow calls (stack, calls, top's counts) share: their programs' probes
by route (bpf/frame_events.h), what those can fail to keep, and code objects made frames."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..codes import UNANNOUNCED_CODE, UNKNOWN_CODE, Codes
from ..eval_frame import EVAL_FRAME_ROUTE, OPCODES_313
from ..events import (
    COUNTER_CHAIN_SPENT,
    COUNTER_CODES_LOST,
    COUNTER_HOOK_FORKS_LOST,
    COUNTER_INITS_UNTIMED,
    COUNTER_MISSED_RETURNS,
    COUNTER_NO_THREAD_STATE,
    COUNTER_RECOVERED_CALLS,
    COUNTER_SEEDS_PARTIAL,
    COUNTER_STACK_MISMATCH,
    COUNTER_UNREGISTERED_EVENTS,
)
from ..program import CodeProbe, Handler, Loss, ProgramSpec, marker
from ..stacks import Frame
from ..target import EVAL_FRAME

PROBE_ARGUMENTS = 3  # every handler reads (file, function, line): zeros where a probe has none
USDT_HANDLERS = (
    ("function__return", Handler("on_function_return", PROBE_ARGUMENTS)),
    ("function__entry", Handler("on_function_entry", PROBE_ARGUMENTS)),
)
CODE_PROBES = (
    marker("_Py_MakeCoro", Handler("on_generator_created", PROBE_ARGUMENTS)),
    # the entry before the return: every call seen has its return's probe
    CodeProbe(EVAL_FRAME, Handler("on_eval_frame", PROBE_ARGUMENTS), route=EVAL_FRAME_ROUTE),
    CodeProbe(EVAL_FRAME, Handler("on_eval_frame_return", PROBE_ARGUMENTS), returns=True, route=EVAL_FRAME_ROUTE),
    CodeProbe("init_call", Handler("on_init_call", PROBE_ARGUMENTS), route=EVAL_FRAME_ROUTE),
    CodeProbe("init_return", Handler("on_init_return", PROBE_ARGUMENTS), route=EVAL_FRAME_ROUTE),
)
assert set(OPCODES_313) == {"init_call", "init_return"}
# The programs a probe hit goes on in (bpf/frame_events.h's call_programs, by index): the
# seeding walk at a thread's first event, and a handler per kind of call and route.
SEEDING = tuple(("call_programs", function, "kprobe", index) for index, function in enumerate((
    "seed_start", "seed_walk", "seed_done", "unwind_program", "handle_usdt_entry_program", "handle_usdt_return_program",
    "handle_eval_entry_program", "handle_eval_caller_program", "recover_program", "handle_eval_return_program",
    "handle_eval_popped_program", "handle_init_called_program", "handle_init_returned_program")))

CALL_LOSSES = (
    Loss(COUNTER_CODES_LOST, "{n} events of code objects that could not be announced (the codes ring buffer was "
         "full): named [code object not announced] where they never were"),
    Loss(COUNTER_SEEDS_PARTIAL, "{n} threads whose frames when first seen could not all be read (deeper than 1024, "
         "or unreadable): their outer frames are missing"),
    Loss(COUNTER_NO_THREAD_STATE, "{n} events of threads whose Python thread state could not be found, dropped",
         dropped=True),
    Loss(COUNTER_CHAIN_SPENT, "{n} events dropped: the kernel's programs for them spent the 33 tail calls a chain may "
         "make (a long search for a thread's state, or a deep walk or unwind, before)", dropped=True),
    Loss(COUNTER_MISSED_RETURNS, "{n} returns seen late (their calls returned unseen: frames that began before "
         "tracing or were evaluated inline have no return probe, and the kernel keeps at most 64 pending per thread): "
         "timed to when they were seen"),
    Loss(COUNTER_RECOVERED_CALLS, "{n} calls seen late (evaluated inline, found in the frame chain at a call they "
         "made): timed from when they were seen"),
    Loss(COUNTER_STACK_MISMATCH, "{n} calls made from a frame not on the thread's stack as kept (it was left as it "
         "was)"),
    Loss(COUNTER_HOOK_FORKS_LOST, "{n} processes forked while their parent's eval_frame hook was set that could not "
         "be told (the hooked map or its ring buffer was full): their hook may stay set, each call a C call too"),
    Loss(COUNTER_UNREGISTERED_EVENTS, "{n} events of processes beyond {py_processes} followed at once dropped: the "
         "py_processes map was full", dropped=True),
    Loss(COUNTER_INITS_UNTIMED, "{n} __init__ calls of CPython 3.13's specialized class call seen only returning: "
         "counted, untimed (their time is their caller's)"),
)


def follows_calls(spec: ProgramSpec) -> ProgramSpec:
    """A program that follows calls by either route (bpf/frame_events.h)."""
    return replace(spec, handlers=USDT_HANDLERS, code_probes=CODE_PROBES, walker=True, continuations=SEEDING,
                   follows_calls=True)


def code_frame(codes: Codes, code_id: int) -> Frame:
    """The frame a code object's calls are shown as: its function, file and first line."""
    code = codes.get(code_id) if code_id else None
    if code is None:
        return Frame(UNKNOWN_CODE if not code_id else UNANNOUNCED_CODE, "", 0, synthetic=True)
    return Frame(code.function, code.file, code.first_line)


def code_line(codes: Codes, code_id: int, instruction: int) -> Optional[int]:
    code = codes.get(code_id) if code_id else None
    return code.line(instruction) if code else None


def forget_codes(session, processes) -> None:
    """The code objects of processes that exited, once what refers to them is taken."""
    for process in processes:
        session.codes.forget(process)
