"""Folded stacks: weights that add up, exact call counts, and flamegraph.pl rendering them."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import HOST, PID, Target, folded_lines, label, run_tracer, trace_held

REPOSITORY = Path(__file__).resolve().parents[2]


def flamegraph_pl():
    for candidate in (REPOSITORY.parent / "shared/tools/flamegraph.pl", os.environ.get("FLAMEGRAPH_PL"),
                      shutil.which("flamegraph.pl")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("flamegraph.pl not found (../shared/tools/flamegraph.pl, $FLAMEGRAPH_PL or PATH)")


def test_call_counts_are_exact():
    result = run_tracer("stack", "--folded", "--weight", "calls", "--filename", "calls.py", "--",
                        *HOST.command("calls.py"))
    assert result.returncode == 0
    module = f"<module> ({HOST.script('calls.py')}:1)"
    top, middle, leaf = (label("calls.py", f, f"def {f}") for f in ("top", "middle", "leaf"))
    assert folded_lines(result.stdout.decode().replace("14\n", "", 1)) == {
        module: 1,
        f"{module};{top}": 1,
        f"{module};{top};{middle}": 1,
        f"{module};{top};{middle};{leaf}": 2,
        f"{module};{top};{leaf}": 1,
    }


def test_time_weights_add_up_to_the_measured_time():
    """Tolerance: each frame's self time within 10% of what the script sleeps in it (sleep
    overshoots by well under a millisecond; the trap per call costs about a microsecond)."""
    run = trace_held(Target("timed.py"), "stack", PID, "--folded", "--filename", "timed.py")
    assert run.code == 0
    weights = folded_lines(run.stdout)
    main, slow, fast = (label("timed.py", f, f"def {f}") for f in ("main", "slow", "fast"))
    main = f"<module> ({HOST.script('timed.py')}:1);{main}"  # the module began before tracing
    assert set(weights) >= {f"{main};{slow}", f"{main};{fast}"}
    assert weights[f"{main};{slow}"] == pytest.approx(300_000, rel=0.10)
    assert weights[f"{main};{fast}"] == pytest.approx(200_000, rel=0.10)  # two calls merged
    assert sum(w for stack, w in weights.items() if stack.startswith(main)) == pytest.approx(500_000, rel=0.10)


def test_per_thread_roots_stacks_at_threads():
    result = run_tracer("stack", "--folded", "--per-thread", "--weight", "calls", "--filename", "threads.py",
                        "--", *HOST.command("threads.py"), input=b"go\n")
    assert result.returncode == 0
    weights = folded_lines(result.stdout.decode().split("\n", 1)[1])
    step = label("threads.py", "step", "def step")
    per_thread = {stack.split(";")[0]: w for stack, w in weights.items() if stack.endswith(step)}
    assert all(re.fullmatch(r"thread \d+", root) for root in per_thread)
    assert sorted(per_thread.values()) == [1, 2, 3, 4]


def test_flamegraph_pl_renders_the_folded_output(tmp_path):
    renderer = flamegraph_pl()
    folded = tmp_path / "out.folded"
    result = run_tracer("stack", "--folded", "--weight", "calls", "-o", folded, "--", *HOST.command("features.py"), input=b"go\n")
    assert result.returncode == 0
    svg = subprocess.run(["perl", renderer, "--title", "pybpftrace test", folded], capture_output=True, check=True)
    text = svg.stdout.decode()
    assert text.startswith("<?xml") and "</svg>" in text
    assert "pybpftrace test" in text
    for function in ("catcher", "relay", "fail", "numbers", "consume", "wrapper", "decorated", "main"):
        assert f"<title>{function} (" in text, function
    total = sum(folded_lines(folded.read_text()).values())
    assert f"all ({total:,} samples, 100%)" in text.replace("&#39;", "'")
