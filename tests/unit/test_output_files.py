"""-o FILE as output_files opens it: before tracing, never through a link planted where others
can write, never a FIFO or a device (the tests run as root, as the tracer does)."""

import os
import stat
import subprocess

import pytest

from pybpftrace.output_files import OutputRefused, open_output, remove_unwritten

NOBODY = 65534


def written(path, data=b"trace\n"):
    with open_output(str(path)) as stream:
        stream.write(data)


def test_a_new_file_is_created_and_an_old_one_truncated(tmp_path, shared):
    for directory in (tmp_path, shared):
        path = directory / "out.txt"
        written(path, b"a long first trace\n")
        written(path, b"short\n")
        assert path.read_bytes() == b"short\n"


def test_a_link_planted_in_a_shared_directory_is_not_followed(tmp_path, shared):
    victim = tmp_path / "root-owned"
    victim.write_bytes(b"precious\n")
    (shared / "out.txt").symlink_to(victim)
    with pytest.raises(OutputRefused, match="symbolic link in a directory others can write to"):
        open_output(str(shared / "out.txt"))
    assert victim.read_bytes() == b"precious\n"


def test_another_users_file_in_a_shared_directory_is_not_written(shared):
    theirs = shared / "out.txt"
    theirs.write_bytes(b"theirs\n")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(OutputRefused, match=f"belongs to another user \\(uid {NOBODY}\\)"):
        open_output(str(theirs))
    assert theirs.read_bytes() == b"theirs\n"


def test_a_link_of_the_users_own_making_is_followed(tmp_path):
    target = tmp_path / "real.txt"
    (tmp_path / "link.txt").symlink_to(target)
    written(tmp_path / "link.txt")
    assert target.read_bytes() == b"trace\n"


@pytest.mark.parametrize("make, kind", [
    (lambda path: os.mkfifo(path), "a FIFO"),
    (lambda path: os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5)), "a device"),  # /dev/zero's
])
def test_fifos_and_devices_are_refused_at_once(tmp_path, make, kind):
    path = tmp_path / "out"
    make(path)
    with pytest.raises(OutputRefused, match=f"it is {kind} \\(only regular files, /dev/null and the standard"):
        open_output(str(path))


@pytest.fixture
def nodev_directory(tmp_path):
    """A tmpfs mounted nodev, as Debian 13's /tmp is: a device there cannot be opened."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nodev,size=1m", "tmpfs", tmp_path], check=True)
    yield tmp_path
    subprocess.run(["umount", tmp_path], check=True)


def test_a_device_on_a_nodev_mount_is_named_a_device(nodev_directory):
    path = nodev_directory / "out"
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    with pytest.raises(OutputRefused, match="it is a device \\(only regular files, /dev/null and the standard"):
        open_output(str(path))


def test_dev_null_and_the_standard_streams_are_written():
    for path in ("/dev/null", "/dev/stdout", "/dev/stderr", "-"):
        with open_output(path) as stream:
            stream.write(b"")


@pytest.mark.parametrize("path, why", [
    ("{tmp}", "it is a directory"),
    ("{tmp}/none/out.txt", "no directory {tmp}/none"),
])
def test_paths_that_cannot_be_written(tmp_path, path, why):
    with pytest.raises(OutputRefused, match=f"^cannot write {path}: {why}$".format(tmp=tmp_path)):
        open_output(path.format(tmp=tmp_path))


def test_a_failed_trace_leaves_no_file_it_made(tmp_path):
    made, kept, written_to = tmp_path / "made.svg", tmp_path / "kept.txt", tmp_path / "written.txt"
    kept.write_bytes(b"")
    for path in (made, kept, written_to):
        open_output(str(path)).close()
    written_to.write_bytes(b"partial\n")
    remove_unwritten()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.txt", "written.txt"]
