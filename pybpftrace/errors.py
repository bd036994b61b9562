"""Errors a user can cause or meet, each with its own exit code and a one-line message."""

from __future__ import annotations


class TraceError(Exception):
    """An error reported as `pybpftrace: MESSAGE` and exit code `exit_code`."""

    exit_code = 1


class NoProbes(TraceError):
    """A Python whose binary lacks the probes the command needs."""

    exit_code = 2


class NotFound(TraceError):
    """No such process, or no such file."""

    exit_code = 3


class NotPython(TraceError):
    """The process or file holds no CPython interpreter."""

    exit_code = 4


class NotPermitted(TraceError):
    """Tracing needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)."""

    exit_code = 5


class KernelSetup(TraceError):
    """bcc or kernel headers are missing, or the kernel lacks a needed feature."""

    exit_code = 6


class CommandNotFound(TraceError):
    """The command after `--` cannot be found or run."""

    exit_code = 7


class Unsupported(TraceError):
    """A CPython whose stacks pybpftrace cannot read: its version or build."""

    exit_code = 8


class OutputFailed(TraceError):
    """The output could not be written (a full disk, say): the trace ends, what was written stays."""

    exit_code = 9


class HookRefused(TraceError):
    """The eval-frame route cannot be exact in this process (its evaluator is another tool's,
    its JIT is on, it opted out of remote debugging): its eval_frame hook is left alone."""

    exit_code = 10


EXIT_USAGE = 64  # a bad option or argument (sysexits' EX_USAGE), kept apart from 2 = no probes


class BadUsage(TraceError):
    """Options that do not go together, or a value only the command itself can check (a
    --function name, an --event pattern): reported like any bad option."""

    exit_code = EXIT_USAGE


EXIT_CODES = {
    0: "success (also when the traced process exits)",
    NoProbes.exit_code: "the Python lacks the probes the command needs (or --eval-hook is needed)",
    NotFound.exit_code: "no such process or file",
    NotPython.exit_code: "not a Python process or binary",
    NotPermitted.exit_code: "not permitted: run as root",
    KernelSetup.exit_code: "bcc, kernel headers or a kernel feature is missing",
    CommandNotFound.exit_code: "the command to launch was not found",
    Unsupported.exit_code: "a CPython version or build whose stacks cannot be read",
    OutputFailed.exit_code: "the output could not be written (what was written is kept)",
    HookRefused.exit_code: "the eval-frame route refused to set the process's eval_frame hook",
    EXIT_USAGE: "bad option or argument",
    TraceError.exit_code: "any other error",
}
