"""What is read of ELF files is kept by file, not by the path that named it, and bounded."""

from pybpftrace.target import ByFile


def test_a_file_is_read_once_whatever_names_it_and_read_again_once_the_cache_was_full():
    reads = []
    cache = ByFile(2)

    def read(name):
        return lambda: reads.append(name) or name

    assert cache.get((1, 10, 0), read("/proc/7/map_files/a")) == "/proc/7/map_files/a"
    assert cache.get((1, 10, 0), read("/proc/8/map_files/a")) == "/proc/7/map_files/a"  # the same file
    assert cache.get((1, 11, 0), read("b")) == "b"
    assert (reads, len(cache)) == (["/proc/7/map_files/a", "b"], 2)
    assert cache.get((1, 12, 0), read("c")) == "c"  # full: emptied, then this one kept
    assert len(cache) == 1
    assert cache.get((1, 10, 0), read("a again")) == "a again"
    assert reads == ["/proc/7/map_files/a", "b", "c", "a again"]
