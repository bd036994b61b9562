"""The kernel's glob matcher: bpf/glob.h compiled natively and run on tables from
pybpftrace/globs.py, against fnmatch's answers for the same patterns and names: one pattern
among unused (all-zero) ones, and several at once (a name matches when any of them does)."""

import fnmatch
import random
import subprocess

import pytest

from pybpftrace.globs import MAX_LENGTH, GlobError, compile_glob
from pybpftrace.program import bpf_dir
from pybpftrace.tools.audit import GLOBS_MAX

HARNESS = """
#include <stdio.h>
#include <string.h>
#define __always_inline inline
#define GLOBS_MAX %d
#include "glob.h"

struct glob_case {
	struct glob globs[GLOBS_MAX];  /* the unused ones all zeros, as in the kernel's map */
	const char *text;
};

static struct glob_case cases[] = {
%s
};

int main(void)
{
	static char text[STRING_MAX];
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct glob *globs[GLOBS_MAX];
		for (int k = 0; k < GLOBS_MAX; k++)
			globs[k] = &cases[i].globs[k];
		memset(text, 0, sizeof(text));
		strncpy(text, cases[i].text, STRING_MAX - 1);
		putchar(globs_match(globs, text) ? '1' : '0');
	}
	return 0;
}
"""

NAMES = [
    "socket.connect", "socket.bind", "socket.getaddrinfo", "open", "os.listdir", "os.exec", "exec",
    "pybpftrace.test", "a", "", "aaa", "abab", "ab.ab.ab", "x" * 255, "socket.connect.extra",
]
PATTERNS = [
    "socket.connect", "socket.*", "*", "**", "*.*", "?", "???", "*connect", "socket*", "s*t",
    "*o*e*", "?*?", "a*b*a*b", "*ab", "a?a", "os.*", "*.*.*", "x*x", "*x", "socket.?onnect",
    "o*n", "exec", "*exec*", "a" + "*" * 5 + "b",
]


def c_string(text: str) -> str:
    return '"' + "".join(f"\\x{byte:02x}" for byte in text.encode()) + '"'


def c_glob(pattern: str) -> str:
    glob = compile_glob(pattern)
    steps = ", ".join(f"{step:#x}ULL" for step in glob.steps)
    return f"{{{glob.start:#x}ULL, {glob.stars:#x}ULL, {glob.accept:#x}ULL, {{{steps}}}}}"


def kernel_matches(tmp_path, require_tools, cases):
    """What globs_match says for each (patterns, text): a pattern alone goes in a slot that
    moves from case to case, among unused ones."""
    require_tools("gcc")
    rows = []
    for index, (patterns, text) in enumerate(cases):
        if isinstance(patterns, str):
            slots = [None] * GLOBS_MAX
            slots[index % GLOBS_MAX] = patterns
        else:
            slots = [*patterns, *[None] * (GLOBS_MAX - len(patterns))]
        globs = ", ".join(c_glob(pattern) if pattern else "{0}" for pattern in slots)
        rows.append(f"\t{{{{{globs}}}, {c_string(text)}}}")
    (tmp_path / "glob.c").write_text(HARNESS % (GLOBS_MAX, ",\n".join(rows)))
    binary = tmp_path / "glob"
    subprocess.run(["gcc", "-O1", f"-I{bpf_dir()}", "-o", binary, tmp_path / "glob.c"], check=True)
    output = subprocess.run([binary], capture_output=True, text=True, check=True).stdout
    return [flag == "1" for flag in output]


def test_kernel_matcher_agrees_with_fnmatch(tmp_path, require_tools):
    cases = [(pattern, name) for pattern in PATTERNS for name in NAMES]
    generator = random.Random(1234)  # and random ones over a small alphabet, where globs are hard
    for _ in range(2000):
        pattern = "".join(generator.choice("ab*?") for _ in range(generator.randint(1, 8)))
        name = "".join(generator.choice("ab") for _ in range(generator.randint(0, 10)))
        cases.append((pattern, name))
    expected = [fnmatch.fnmatchcase(name, pattern) for pattern, name in cases]
    assert kernel_matches(tmp_path, require_tools, cases) == expected
    assert sum(expected) > 500 and len(expected) - sum(expected) > 500  # both answers well covered


def test_several_patterns_match_when_any_of_them_does(tmp_path, require_tools):
    generator = random.Random(4321)
    cases = []
    for _ in range(1000):
        patterns = ["".join(generator.choice("ab*?") for _ in range(generator.randint(1, 6)))
                    for _ in range(generator.randint(1, GLOBS_MAX))]
        name = "".join(generator.choice("ab") for _ in range(generator.randint(0, 10)))
        cases.append((patterns, name))
    expected = [any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) for patterns, name in cases]
    assert kernel_matches(tmp_path, require_tools, cases) == expected
    assert sum(expected) > 200 and len(expected) - sum(expected) > 200


def test_longest_pattern_uses_every_bit(tmp_path, require_tools):
    pattern = "s" * (MAX_LENGTH - 1) + "?"
    cases = [(pattern, "s" * MAX_LENGTH), (pattern, "s" * (MAX_LENGTH - 1)), (pattern, "s" * (MAX_LENGTH + 1))]
    assert kernel_matches(tmp_path, require_tools, cases) == [True, False, False]


def test_tables():
    glob = compile_glob("a**?b")  # stars merge: a * ? b
    assert (glob.start, glob.stars, glob.accept) == (0b1, 0b10, 0b10000)
    assert glob.steps[ord("a")] == 0b0101 and glob.steps[ord("b")] == 0b1100 and glob.steps[ord("c")] == 0b0100
    assert compile_glob("*").start == 0b11  # a leading star also matches nothing


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("", "'': a pattern is 1 to 63 characters, without NUL"),
        ("a\0b", "'a\\x00b': a pattern is 1 to 63 characters, without NUL"),
        ("x" * 64, f"'{'x' * 64}' has 64 characters: at most 63 are matched in the kernel"),
    ],
)
def test_patterns_the_kernel_cannot_take(pattern, message):
    with pytest.raises(GlobError) as error:
        compile_glob(pattern)
    assert str(error.value) == message
