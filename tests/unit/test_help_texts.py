"""Every command's --help says what the command does: the usage of the tracing commands shows
`-- COMMAND`, and none of the commands that read memory claims to need probes."""

import re

import pytest
from click.testing import CliRunner

from pybpftrace.cli import cli

TRACING = ["stack", "profile", "calls", "top", "gc", "imports", "lines", "audit"]
READ_MEMORY = ["profile", "dump", "top"]


def help_text(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="pybpftrace", terminal_width=100)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click's line breaks left out


@pytest.mark.parametrize("command", TRACING)
def test_tracing_commands_show_the_command_they_launch(command):
    assert f"Usage: pybpftrace {command} [OPTIONS] [PID]... [-- COMMAND [ARGS]...]" in help_text(command)


@pytest.mark.parametrize("command", READ_MEMORY)
def test_no_probes_are_said_to_be_needed_where_none_are(command):
    text = help_text(command)
    assert not re.search(r"USDT|with the probes|needs? (the )?probes", text), text


def test_the_group_names_both_ways_in():
    text = help_text()
    assert "through its USDT probes" not in text
    assert "profile, dump and top read the interpreter's memory: any CPython 3.7 to 3.15, no probes needed" in text
    assert "the eval-frame route: no probes needed" in text
    assert "gc, imports, audit and lines need the probes of a --with-dtrace build" in text


@pytest.mark.parametrize("command", ["profile", "top"])
def test_all_reads_any_python_where_stacks_are_read(command):
    assert ("--all Trace every process running any CPython, now and later (other pybpftrace tracers left out)."
            in help_text(command))


@pytest.mark.parametrize("command", ["stack", "calls", "gc", "imports", "lines", "audit"])
def test_all_takes_the_pythons_with_the_probes_elsewhere(command):
    assert "--all Trace every process running a CPython with the probes this command needs" in help_text(command)


def test_profile_s_default_format_is_folded():
    assert "default: from -o FILE's extension, else folded" in help_text("profile")


def test_top_counts_calls_by_either_route():
    text = help_text("top")
    assert "calls counted where they can be followed (the function probes, or the eval-frame route" in text
    assert "--calls / --no-calls Count calls where they can be followed: the function probes, or the eval-frame " \
           "route" in text
    assert "at the end, the whole run's table" in text


@pytest.mark.parametrize("command", ["profile", "top"])
def test_gil_is_read_on_every_version_with_a_gil(command):
    assert "CPython 3.7-3.15 with a GIL" in help_text(command)


@pytest.mark.parametrize("command", ["dump", "top", "gc"])
def test_output_file_is_named_file(command):
    assert "-o, --output FILE Write to FILE" in help_text(command)
