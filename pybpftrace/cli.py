"""The command line: options in, a tool run, one-line errors and distinct exit codes out."""

from __future__ import annotations

import functools
import math
import sys
from typing import Callable, Optional

import click

from .errors import EXIT_CODES, EXIT_USAGE, TraceError
from .escaping import TerminalSafe, shown
from .formats.options import GuardedText, output_options
from .output_files import OutputRefused, open_text_output, remove_unwritten
from .render import WEIGHTS
from .eval_frame import ROUTES
from .session import DEFAULT_BUFFER_MIB, MAX_BUFFER_MIB, TraceOptions
from .target import TargetOptions


class WithCommand(click.Command):
    """Takes everything after `--` as a command to launch and trace, and says so in its usage."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND [ARGS]...]"]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["command"] = args[split + 1 :]
            args = args[:split]
        return super().parse_args(ctx, args)


class FiniteFloat(click.FloatRange):
    """A number in a range, never inf or nan (which every range comparison lets through or
    no later arithmetic takes)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class OutputFile(click.ParamType):
    """-o FILE of a command with one text output: opened at once (output_files), so that a
    bad path is refused before anything is attached."""

    name = "filename"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return open_text_output(value)
        except OutputRefused as error:
            self.fail(str(error), param, ctx)


PID_MAX_LIMIT = 4194304  # the kernel's largest PID and thread id (PID_MAX_LIMIT on 64-bit)


def _exit_codes_help() -> str:
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in sorted(EXIT_CODES.items()))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nExit codes:\n" + _exit_codes_help(),
)
@click.version_option(package_name="pybpftrace")
def cli() -> None:
    """Watch a running CPython from the outside, with eBPF. profile, dump and top read the
    interpreter's memory: any CPython 3.7 to 3.15, no probes needed. stack, calls and top's
    counts follow calls through a --with-dtrace build's function probes or through its
    evaluator (the eval-frame route: no probes needed; by PID on 3.11+, with --eval-hook). gc,
    imports, audit and lines need the probes of a --with-dtrace build; list shows them. Every
    command but list needs root."""


@cli.command("list")
@click.argument("target")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def list_command(target: str, json_output: bool) -> None:
    """List the USDT probes of TARGET: a PID (every mapped ELF file with probes, read through
    /proc/PID/map_files or /proc/PID/root), an executable or a shared library."""
    from .tools import probe_list

    sys.exit(probe_list.run(target, json_output, TerminalSafe(sys.stdout)))


_OUTPUT_OPTION = click.option("-o", "--output", type=OutputFile(), metavar="FILE", help="Write to FILE instead of stdout.")
_TARGET_OPTIONS = [
    click.argument("pids", nargs=-1, type=click.IntRange(min=1), metavar="[PID]..."),
    click.option("-p", "--pid", "more_pids", multiple=True, type=click.IntRange(min=1),
                 help="A process to trace (repeatable)."),
    click.option("--binary", "binaries", multiple=True, metavar="PATH",
                 help="Trace every process running PATH, now and later (repeatable)."),
]
_COMMON_OPTIONS = [
    click.option("--follow-forks", is_flag=True,
                 help="Also trace the processes the targets fork, from the moment each is attached."),
    click.option("--duration", type=FiniteFloat(min=0, min_open=True), metavar="SECONDS",
                 help="Stop after SECONDS."),
    _OUTPUT_OPTION,
    click.option("--json", "json_output", is_flag=True, help="Print JSON."),
    click.option("--buffer-size", type=FiniteFloat(min=0.1, max=MAX_BUFFER_MIB), default=DEFAULT_BUFFER_MIB,
                 show_default=True, metavar="MIB", help="Ring buffer size."),
    click.option("-q", "--quiet", is_flag=True, help="No live status line on the terminal."),
    click.option("--qualnames", is_flag=True,
                 help="Name functions by their qualified names (Class.method, co_qualname: CPython 3.11+)."),
]


def _tracing_options(reads_stacks: bool) -> list[Callable]:
    """A tracing command's options; --all takes the Pythons it can trace: any CPython for
    the commands that read stacks, else those with the probes the command needs."""
    which = "any CPython" if reads_stacks else "a CPython with the probes this command needs"
    everything = click.option("--all", "all_pythons", is_flag=True,
                              help=f"Trace every process running {which}, now and later (other pybpftrace "
                                   "tracers left out).")
    return [*_TARGET_OPTIONS, everything, *_COMMON_OPTIONS]


_TRACING_NAMES = ("pids", "more_pids", "binaries", "all_pythons", "follow_forks", "duration", "buffer_size", "quiet",
                  "qualnames")
# The commands that follow calls: how (routes.py).
_CALL_OPTIONS = [
    click.option("--route", type=click.Choice(ROUTES), default=None,
                 help="How calls are seen: the function probes (usdt, the default where CPython has them), or "
                      "its evaluator (eval-frame: any build, and CPython 3.12 to 3.14)."),
    click.option("--eval-hook", is_flag=True,
                 help="By PID, on CPython 3.11+: let the eval-frame route set the interpreter's eval_frame hook "
                      "(one pointer per interpreter, set back when tracing ends, however it ends) so that every "
                      "call goes through its evaluator. A launched command's is set from its first call."),
]


def following_calls(function: Callable) -> Callable:
    """A tracing command that follows calls: it takes --route and --eval-hook too."""
    function.follows_calls = True
    return function


def reading_stacks(function: Callable) -> Callable:
    """A tracing command that reads stacks out of memory: any CPython, with or without probes."""
    function.reads_stacks = True
    return function


_GIL = click.option("--gil", is_flag=True, help="Only samples of the thread holding the GIL (py-spy's --gil): "
                    "where GIL contention goes. CPython 3.7-3.15 with a GIL.")


_ASYNC = click.option(
    "--async", "async_tasks", is_flag=True,
    help="Show a sample taken inside an asyncio task under the tasks awaiting it, each task a [task NAME] frame, "
         "instead of under the event loop: the tasks are read out of the target's memory every second and at the end "
         "(no probes needed; CPython 3.9-3.15). A sample whose task cannot be told keeps its thread's stack; the "
         "summary counts them, and why.")


_SUBPROCESSES = click.option(
    "--subprocesses", is_flag=True,
    help="Their descendants too, now and later, each Python read (py-spy's --subprocesses). A command that is no "
         "Python (a shell, env, uv run) is followed to the Pythons it starts without it.")


def _with_subprocesses(trace: TraceOptions, subprocesses: bool) -> TraceOptions:
    if subprocesses and (trace.target.binaries or trace.target.all_pythons):
        raise click.UsageError("--subprocesses goes with PIDs or a command: --binary and --all read every process already")
    trace.target.subprocesses = subprocesses
    return trace


def tracing_command(function: Callable) -> Callable:
    """A command that traces: PIDs, `-- CMD`, --binary or --all, and the common options, handed
    to the function as `trace` (a TraceOptions), `output` and `json_output`; a command with
    @output_options gets `outputs` instead of `output`."""

    follows_calls = getattr(function, "follows_calls", False)
    reads_stacks = getattr(function, "reads_stacks", False)

    @functools.wraps(function)
    def command(**options):
        ctx = click.get_current_context()
        common = {name: options.pop(name) for name in _TRACING_NAMES}
        options["trace"] = _trace_options(ctx, **common)
        if follows_calls:
            options["trace"].route = options.pop("route")
            options["trace"].eval_hook = options.pop("eval_hook")
        if "output" in options:
            options["output"] = GuardedText(TerminalSafe(options["output"] or sys.stdout))
        return function(**options)

    own_outputs = any(param.name == "output_paths" for param in getattr(function, "__click_params__", []))
    for decorator in reversed(_CALL_OPTIONS if follows_calls else []):
        command = decorator(command)
    for decorator in reversed(_tracing_options(reads_stacks)):
        if not (own_outputs and decorator is _OUTPUT_OPTION):
            command = decorator(command)
    return cli.command(cls=WithCommand)(command)


def _trace_options(ctx, pids, more_pids, binaries, all_pythons, follow_forks, duration, buffer_size, quiet,
                   qualnames) -> TraceOptions:
    argv = ctx.meta.get("command", [])
    all_pids = [*pids, *more_pids]
    if "command" in ctx.meta and not argv:
        raise click.UsageError("no command after --")
    given = sum(map(bool, (all_pids, argv, binaries or all_pythons)))
    if given > 1:
        raise click.UsageError("give PIDs, a command after --, or --binary/--all: one of them")
    if not given:
        raise click.UsageError("give a PID (or -p PID), a command after --, --binary PATH or --all")
    target = TargetOptions(pids=all_pids, argv=argv, binaries=list(binaries), all_pythons=all_pythons)
    return TraceOptions(target, duration, buffer_size, follow_forks, quiet, qualnames=qualnames)


@tracing_command
@following_calls
@output_options("folded", "svg", "speedscope", "chrome", "pprof")
@click.option("--function", metavar="NAME", help="Trace only inside calls of the function NAME.")
@click.option("--filename", metavar="SUBSTRING", help="Show only calls in files whose path contains SUBSTRING.")
@click.option("--max-depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show only the N outermost levels of calls.")
@click.option("--tid", "tids", multiple=True, type=click.IntRange(min=1, max=PID_MAX_LIMIT),
              help="Trace only this thread (repeatable).")
@click.option("--durations", is_flag=True, help="Show each call's elapsed time on its return line.")
@click.option("--folded", is_flag=True,
              help="Keep the call tree in the kernel and write it at the end: folded stacks for flamegraph.pl, "
                   "or --format svg, speedscope, pprof (svg and pprof imply it).")
@click.option("--weight", type=click.Choice(WEIGHTS), default="time", show_default=True,
              help="Folded weight: self time in microseconds, or calls.")
@click.option("--per-thread", is_flag=True, help="Folded: root each stack at its thread instead of merging threads.")
def stack(trace, outputs, json_output, function, filename, max_depth, tids, durations, folded, weight, per_thread) -> None:
    """Stream each thread's calls and returns: `stack PID`, `stack -p PID -p PID`, or
    `stack [OPTIONS] -- CMD ARGS...` to launch CMD and trace it from its first call.

    Lines read: time since start, thread id, indentation by call depth, => call or
    <= return, function (file:line). Stop with Ctrl-C, SIGTERM, --duration or when the
    targets exit; a summary line goes to stderr. --format speedscope or chrome (or -o
    FILE.speedscope.json, FILE.trace.json) write every call as a span of a timeline."""
    from .tools import stack as stack_tool

    sys.exit(stack_tool.run(stack_tool.StackOptions(
        trace=trace, function=function, filename=filename, max_depth=max_depth or 0, tids=list(tids),
        outputs=outputs, folded=folded, weight=weight, per_thread=per_thread, durations=durations,
    )))


@tracing_command
@reading_stacks
@output_options("json", "svg", "speedscope", "pprof", default="folded")
@click.option("--rate", type=click.IntRange(min=1, max=10000), default=None, metavar="HZ",
              help="Samples a second of each busy thread [default: 999].")
@click.option("--per-thread", is_flag=True, help="Root each stack at its thread instead of merging threads.")
@click.option("--lines", is_flag=True, help="Key frames by the line running instead of the function's first line.")
@click.option("--idle", "weighing", flag_value="idle",
              help="Also threads off their CPU: each wait counts the samples it would have had, and ends in why.")
@click.option("--off-cpu", "weighing", flag_value="off-cpu",
              help="Only time off a CPU, in microseconds, each stack ending in why the thread waited.")
@click.option("--wall", "weighing", flag_value="wall", help="Time on and off a CPU, in microseconds.")
@click.option("--min-block", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="MS",
              help="With --idle, --off-cpu, --wall: shorter waits are counted, not shown.")
@_GIL
@_ASYNC
@_SUBPROCESSES
def profile(trace, outputs, json_output, rate, per_thread, lines, weighing, min_block, gil, async_tasks,
            subprocesses) -> None:
    """Where the targets spend their time: their Python stacks, read by the kernel out of the
    interpreter's memory (no probes needed, nothing paused) at each tick of a sampling clock
    and, with --idle, --off-cpu or --wall, when a thread comes back from a wait; counted and
    printed as folded stacks when tracing ends."""
    from .tools import profile as profile_tool
    from .sampling import DEFAULT_RATE

    trace = _with_subprocesses(trace, subprocesses)
    if weighing == "off-cpu" and rate:
        raise click.UsageError("--off-cpu takes no --rate: it weighs waits, not samples")
    if gil and weighing:
        raise click.UsageError(f"--gil goes with CPU samples only, not --{weighing}: a thread that waits holds no GIL")
    sys.exit(profile_tool.run(profile_tool.ProfileOptions(
        trace=trace, outputs=outputs, rate=rate or DEFAULT_RATE, per_thread=per_thread, lines=lines,
        weighing=weighing or "cpu", min_block=min_block / 1e3, gil_only=gil, async_tasks=async_tasks,
    )))


@cli.command()
@click.argument("pids", nargs=-1, required=True, type=click.IntRange(min=1), metavar="PID...")
@click.option("-o", "--output", type=OutputFile(), metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--json", "json_output", is_flag=True, help="Print JSON (with --subprocesses, or several PIDs: a list).")
@click.option("--subprocesses", is_flag=True,
              help="Their descendants too, each Python dumped, the others named (py-spy's --subprocesses).")
@click.option("--locals", "with_locals", is_flag=True,
              help="Each frame's arguments and local variables, as repr() shows them (py-spy's --locals).")
@click.option("--qualnames", is_flag=True,
              help="Name functions by their qualified names (Class.method, co_qualname: CPython 3.11+).")
def dump(pids, output, json_output, subprocesses, with_locals, qualnames) -> None:
    """Every thread's Python stack now, innermost frame first, with its thread ids, name and
    state (running, idle, waiting for the GIL), read by the kernel while the process runs on:
    nothing is paused."""
    from .tools import dump as dump_tool

    sys.exit(dump_tool.run(dump_tool.DumpOptions(list(pids), output, json_output, subprocesses, with_locals, qualnames)))


_STACKS = click.option("--stacks", is_flag=True,
                       help="Show the Python stack each event fired in (read by the kernel, no probe needed).")


def _folded(weighed: str) -> Callable:
    return click.option("--folded", is_flag=True,
                        help=f"Instead, at the end, folded stacks of {weighed} by the stack it fired in.")


def _stacks_usage(json_output: bool, folded: bool) -> None:
    if json_output and folded:
        raise click.UsageError("--folded and --json do not go together")


@tracing_command
@_STACKS
@_folded("pause time")
def gc(trace, output, json_output, stacks, folded) -> None:
    """Every garbage collection of the targets: generation, pause, objects collected; at the
    end, a summary per generation and a histogram of pauses. --stacks: the code that triggered
    each collection."""
    from .tools import gc as gc_tool

    _stacks_usage(json_output, folded)
    sys.exit(gc_tool.run(trace, output, json_output, stacks, folded))


@tracing_command
@_STACKS
@_folded("import time")
def imports(trace, output, json_output, stacks, folded) -> None:
    """Each module import of the targets, nested under the import that triggered it, with its
    duration and whether it was found; at the end a tree, slowest first (like -X importtime).
    --stacks: the code that ran each import."""
    from .tools import imports as imports_tool

    _stacks_usage(json_output, folded)
    sys.exit(imports_tool.run(trace, output, json_output, stacks, folded))


@tracing_command
@click.option("--stream", is_flag=True, help="Print every line as it runs instead of counting.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, metavar="N",
              help="Show the N most run lines.")
@click.option("--filename", metavar="SUBSTRING", help="Only lines in files whose path contains SUBSTRING.")
def lines(trace, output, json_output, stream, top, filename) -> None:
    """The hot lines of the targets (how often each file:line runs, counted in the kernel),
    or with --stream each line as it runs. Needs the line probe (CPython up to 3.11)."""
    from .tools import lines as lines_tool

    sys.exit(lines_tool.run(lines_tool.LinesOptions(trace, output, json_output, stream, top, filename)))


@tracing_command
@following_calls
@output_options("pprof")
@click.option("--sort", type=click.Choice(["total", "self", "calls", "mean", "max"]), default="total",
              show_default=True, help="Order of the table.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, metavar="N",
              help="Show the first N functions.")
@click.option("--histogram", metavar="FUNCTION", help="Draw the log2 latency histogram of FUNCTION instead.")
def calls(trace, outputs, json_output, sort, top, histogram) -> None:
    """Per function: calls and latency (total, self, mean, p50/p99, max), counted in the
    kernel and printed when tracing ends. Percentiles come from power-of-two buckets.
    --format pprof: a flat profile, each function's calls and self time."""
    from .tools import calls as calls_tool

    sys.exit(calls_tool.run(calls_tool.CallsOptions(trace, outputs, sort, top, histogram)))


@tracing_command
@following_calls
@reading_stacks
@click.option("--interval", type=FiniteFloat(min=0.1), default=1.0, show_default=True, metavar="SECONDS",
              help="Refresh every SECONDS.")
@click.option("--once", is_flag=True, help="Show one interval, then stop.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, metavar="N",
              help="Rows of a plain table (the live screen shows what fits).")
@click.option("--rate", type=click.IntRange(min=1, max=10000), default=None, metavar="HZ",
              help="Samples a second of each busy thread [default: 999].")
@click.option("--sort", type=click.Choice(["own", "total", "calls"]), default="own", show_default=True,
              help="Order: own time (the function itself), total time (with its callees), calls.")
@click.option("--calls/--no-calls", default=True, show_default=True,
              help="Count calls where they can be followed: the function probes, or the eval-frame route (a trap "
                   "per call; on 3.11 the probe also runs the interpreter's tracing path).")
@_GIL
@_ASYNC
@_SUBPROCESSES
def top(trace, output, json_output, interval, once, top, rate, sort, calls, gil, async_tasks, subprocesses) -> None:
    """Where the time goes, each interval, across every traced process: each function's own
    and total share of the Python stacks sampled by the kernel, on every CPython, and the
    calls counted where they can be followed (the function probes, or the eval-frame route:
    --eval-hook by PID). A live screen on a terminal (q quits), plain tables otherwise; at the
    end, the whole run's table (--json: the rest of the last interval)."""
    from .tools import top as top_tool
    from .sampling import DEFAULT_RATE

    trace = _with_subprocesses(trace, subprocesses)
    sys.exit(top_tool.run(top_tool.TopOptions(trace, output, json_output, interval, once, top, rate or DEFAULT_RATE,
                                              sort, calls, gil, async_tasks)))


@tracing_command
@click.option("--event", "events", multiple=True, metavar="GLOB",
              help="Show only events whose name matches GLOB (* any run, ? one byte; repeatable).")
@_STACKS
@_folded("events, counted,")
def audit(trace, output, json_output, events, stacks, folded) -> None:
    """Stream sys.audit events: `audit PID`, or `audit [OPTIONS] -- CMD ARGS...`.

    Lines read: time since start, PID, thread id, event name, and its arguments decoded
    (str, bytes, int, float, bool, None, tuples; other objects as <type object at address>).
    --event filters in the kernel; --stacks shows the code that raised each event. A summary
    line goes to stderr."""
    from .tools import audit as audit_tool

    _stacks_usage(json_output, folded)
    sys.exit(audit_tool.run(audit_tool.AuditOptions(trace=trace, events=list(events), output=output, json=json_output,
                                                    stacks=stacks, folded=folded)))


def main(argv: Optional[list[str]] = None) -> None:
    try:
        cli.main(args=argv, prog_name="pybpftrace", standalone_mode=False)
    except click.UsageError as error:
        remove_unwritten()
        hint = f" (see `pybpftrace {error.ctx.info_name} --help`)" if error.ctx else ""
        click.echo(f"pybpftrace: {shown(error.format_message())}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except TraceError as error:
        remove_unwritten()
        click.echo(f"pybpftrace: {shown(str(error))}", err=True)
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        remove_unwritten()
        sys.exit(130)
    sys.exit(0)
