"""--shard K/N (tests/conftest.py): the parts of the suite that make vm-test SHARDS=N runs at once."""

import pytest

from support import parse_shard, shard_items


def test_the_parts_take_each_test_once_and_share_every_file():
    tests = [f"test_{file}.py::{n}" for file in "abc" for n in range(5)]
    parts = [shard_items(tests, (k, 3))[0] for k in (1, 2, 3)]
    assert sorted(test for part in parts for test in part) == sorted(tests)
    assert [len(part) for part in parts] == [5, 5, 5]
    assert parts[0] == ["test_a.py::0", "test_a.py::3", "test_b.py::1", "test_b.py::4", "test_c.py::2"]
    kept, left = shard_items(tests, (2, 3))
    assert kept == parts[1] and sorted(left) == sorted(parts[0] + parts[2])


def test_one_part_is_the_whole_suite():
    assert shard_items(["a", "b"], (1, 1)) == (["a", "b"], [])


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "1", "a/b", "1/2/3", " 1/2", "-1/2"])
def test_a_shard_outside_its_count_is_refused(text):
    with pytest.raises(ValueError, match=r"--shard takes K/N with 1 <= K <= N"):
        parse_shard(text)


def test_a_shard_is_read():
    assert parse_shard("2/3") == (2, 3)
