"""-o FILE: opened before tracing starts, so that what a trace writes goes where it was asked
to, whatever anyone does to that path while it runs. pybpftrace runs as root and writes what
a traced process chose: in a directory that others can write to (/tmp), a link they planted
is never followed and a file they own is never written. Only regular files, /dev/null and
the standard streams are written: a FIFO or a device would block the tracer or worse."""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO

STANDARD_STREAMS = {"-": 1, "/dev/stdout": 1, "/dev/stderr": 2, "/dev/fd/1": 1, "/dev/fd/2": 2,
                    "/proc/self/fd/1": 1, "/proc/self/fd/2": 2}
_created: list[tuple[str, int, int]] = []  # (path, device, inode) of each file made by open_output


class OutputRefused(Exception):
    """An -o path that cannot or must not be written (the command line reports it as a bad
    argument)."""


def _shared_sticky(directory: str) -> bool:
    """A directory anyone may write to, where only owners may remove (the /tmp kind)."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISVTX and mode & stat.S_IWOTH)


def _refused(path: str, why: str) -> OutputRefused:
    return OutputRefused(f"cannot write {path}: {why}")


def _open_in_shared(path: str) -> tuple[int, bool]:
    """In a sticky world-writable directory: a new file, or one of ours already there; never
    through a link (O_NOFOLLOW), never another user's file."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        pass
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode):
        raise _refused(path, "it is a symbolic link in a directory others can write to (not followed)")
    if found.st_uid != os.geteuid():
        raise _refused(path, f"it belongs to another user (uid {found.st_uid}) in a directory others can write to")
    return os.open(path, flags), False


def _checked(path: str, fd: int) -> None:
    """Only a regular file, or /dev/null, once open (what was opened, not what the path names now)."""
    found = os.fstat(fd)
    if stat.S_ISREG(found.st_mode):
        return
    if stat.S_ISCHR(found.st_mode) and found.st_rdev == os.stat(os.devnull).st_rdev:
        return
    raise _not_regular(path, found.st_mode)


def _not_regular(path: str, mode: int) -> OutputRefused:
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return _refused(path, f"it is {kind} (only regular files, /dev/null and the standard streams are written)")


def _mode_of(path: str) -> int:
    """What the path itself is (0 where it cannot be told)."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def open_output(path: str) -> BinaryIO:
    """The file at path, open for writing from its start (truncated), or OutputRefused."""
    stream_fd = STANDARD_STREAMS.get(path)
    if stream_fd is not None:
        stream = os.fdopen(os.dup(stream_fd), "wb")
        stream.raw.name = path
        return stream
    directory = os.path.dirname(path) or "."
    try:
        if _shared_sticky(directory):
            fd, created = _open_in_shared(path)
        else:
            existed = os.path.lexists(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
            created = not existed
    except OutputRefused:
        raise
    except IsADirectoryError:
        raise _refused(path, "it is a directory") from None
    except FileNotFoundError:
        raise _refused(path, f"no directory {directory}") from None
    except OSError as error:
        if error.errno == errno.ENXIO:  # a FIFO no one reads, or a socket: never waited on
            raise _not_regular(path, stat.S_IFIFO) from None
        if error.errno == errno.EACCES:  # a device on a nodev mount (Debian 13's /tmp) is not opened
            mode = _mode_of(path)
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise _not_regular(path, mode) from None
        raise _refused(path, error.strerror or str(error)) from None
    try:
        _checked(path, fd)
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode):
            os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    if created:
        _created.append((path, found.st_dev, found.st_ino))
    stream = os.fdopen(fd, "wb")
    stream.raw.name = path  # for messages, as open() names it
    return stream


def open_text_output(path: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(open_output(path), encoding="utf-8")


def remove_unwritten() -> None:
    """After a trace that failed: the files it created and never wrote go (nothing is left
    behind by a command that did nothing); any other file is left as it is."""
    for path, device, inode in _created:
        try:
            found = os.lstat(path)
            if (found.st_dev, found.st_ino) == (device, inode) and found.st_size == 0:
                os.unlink(path)
        except OSError:
            pass
    _created.clear()
