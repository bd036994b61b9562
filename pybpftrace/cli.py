"""The command line: options in, a tool run, one-line errors and distinct exit codes out."""

from __future__ import annotations

import sys
from typing import Optional

import click

from .errors import EXIT_CODES, EXIT_USAGE, TraceError
from .render import WEIGHTS


class WithCommand(click.Command):
    """Takes everything after `--` as a command to launch and trace."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["command"] = args[split + 1 :]
            args = args[:split]
        return super().parse_args(ctx, args)


def _exit_codes_help() -> str:
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in sorted(EXIT_CODES.items()))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nExit codes:\n" + _exit_codes_help(),
)
@click.version_option(package_name="pybpftrace")
def cli() -> None:
    """Trace a running CPython from the outside through its USDT probes (a --with-dtrace
    build), with eBPF. Tracing needs root."""


@cli.command("list")
@click.argument("target")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def list_command(target: str, json_output: bool) -> None:
    """List the USDT probes of TARGET: a PID (every mapped ELF file with probes, read through
    /proc/PID/root), an executable or a shared library."""
    from .tools import probe_list

    sys.exit(probe_list.run(target, json_output, sys.stdout))


def _targets(ctx: click.Context, pids: tuple[int, ...], more_pids: tuple[int, ...]) -> tuple[list[int], list[str]]:
    command = ctx.meta.get("command", [])
    all_pids = [*pids, *more_pids]
    if "command" in ctx.meta and not command:
        raise click.UsageError("no command after --")
    if command and all_pids:
        raise click.UsageError("give PIDs or a command after --, not both")
    if not command and not all_pids:
        raise click.UsageError("give a PID (or -p PID) or a command after --")
    return all_pids, command


@cli.command(cls=WithCommand)
@click.argument("pids", nargs=-1, type=click.IntRange(min=1), metavar="[PID]...")
@click.option("-p", "--pid", "more_pids", multiple=True, type=click.IntRange(min=1), help="A process to trace (repeatable).")
@click.option("--function", metavar="NAME", help="Trace only inside calls of the function NAME.")
@click.option("--filename", metavar="SUBSTRING", help="Show only calls in files whose path contains SUBSTRING.")
@click.option("--max-depth", type=click.IntRange(min=1), default=None, metavar="N", help="Show only the N outermost levels of calls.")
@click.option("--tid", "tids", multiple=True, type=click.IntRange(min=1), help="Trace only this thread (repeatable).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help="Stop after SECONDS.")
@click.option("-o", "--output", type=click.File("w"), help="Write the trace to FILE instead of stdout.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per event.")
@click.option("--durations", is_flag=True, help="Show each call's elapsed time on its return line.")
@click.option("--folded", is_flag=True, help="At the end, print folded stacks for flamegraph.pl.")
@click.option("--weight", type=click.Choice(WEIGHTS), default="time", show_default=True, help="Folded weight: self time in microseconds, or calls.")
@click.option("--per-thread", is_flag=True, help="Folded: root each stack at its thread instead of merging threads.")
@click.option("--buffer-size", type=click.FloatRange(min=0.1), default=16, show_default=True, metavar="MIB", help="Ring buffer size.")
@click.option("--follow-forks", is_flag=True, help="Also trace the processes the targets fork (multiprocessing), from the moment each is attached.")
@click.pass_context
def stack(ctx: click.Context, pids, more_pids, function, filename, max_depth, tids, duration, output, json_output, durations, folded, weight, per_thread, buffer_size, follow_forks) -> None:  # noqa: E501
    """Stream each thread's calls and returns: `stack PID`, `stack -p PID -p PID`, or
    `stack [OPTIONS] -- CMD ARGS...` to launch CMD and trace it from its first call.

    Lines read: time since start, thread id, indentation by call depth, => call or
    <= return, function (file:line). Stop with Ctrl-C, SIGTERM, --duration or when the
    targets exit; a summary line goes to stderr."""
    from .tools import stack as stack_tool

    pid_list, command = _targets(ctx, pids, more_pids)
    if folded and json_output:
        raise click.UsageError("--folded and --json do not go together")
    options = stack_tool.StackOptions(
        pids=pid_list,
        command=command,
        function=function,
        filename=filename,
        max_depth=max_depth or 0,
        tids=list(tids),
        duration=duration,
        output=output,
        json=json_output,
        folded=folded,
        weight=weight,
        per_thread=per_thread,
        durations=durations,
        buffer_mib=buffer_size,
        follow_forks=follow_forks,
    )
    sys.exit(stack_tool.run(options))


def main(argv: Optional[list[str]] = None) -> None:
    try:
        cli.main(args=argv, prog_name="pybpftrace", standalone_mode=False)
    except click.UsageError as error:
        hint = f" (see `pybpftrace {error.ctx.info_name} --help`)" if error.ctx else ""
        click.echo(f"pybpftrace: {error.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except TraceError as error:
        click.echo(f"pybpftrace: {error}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
