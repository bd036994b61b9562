from pybpftrace.sources import FirstLines, first_lines

SOURCE = '''\
import functools


def plain():
    pass


@functools.lru_cache
@staticmethod
def decorated():
    yield 1


class Thing:
    def run(self):
        pass

    async def run_async(self):
        await other()


class Other:
    def run(self):
        yield 2
'''


def test_first_lines_of_defs_classes_and_decorated_functions():
    assert first_lines(SOURCE) == {
        "plain": [4],
        "decorated": [8],
        "Thing": [14],
        "run": [15, 23],
        "run_async": [18],
        "Other": [22],
    }


def test_resolve_picks_the_definition_a_line_falls_in(tmp_path):
    (tmp_path / "mod.py").write_text(SOURCE)
    lines = FirstLines()
    lines.watch(1, root="/", cwd=str(tmp_path))
    try:
        assert lines.resolve(1, "mod.py", "decorated", 11) == 8  # resumed at its yield
        assert lines.resolve(1, "mod.py", "run", 15) == 15
        assert lines.resolve(1, "mod.py", "run", 24) == 23  # Other.run, not Thing.run
        assert lines.resolve(1, str(tmp_path / "mod.py"), "run_async", 19) == 18
        assert lines.resolve(1, "mod.py", "plain", -1) == 4  # 3.15 closures report -1
        assert lines.resolve(1, "mod.py", "run", -1) is None  # which run? unknown
        assert lines.resolve(1, "mod.py", "<lambda>", 3) is None
        assert lines.resolve(1, "missing.py", "plain", 4) is None
        assert lines.resolve(2, "mod.py", "plain", 4) is None  # process not watched
    finally:
        lines.close()
