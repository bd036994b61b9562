"""A launched `chroot ROOT COMMAND`: its command found inside the root, as chroot finds it, every
link on the way followed inside the root (never out of it)."""

import pytest

from pybpftrace.errors import CommandNotFound
from pybpftrace.target import chrooted, resolve_in_root


@pytest.mark.parametrize("argv, found", [
    (["chroot", "/r", "python3", "x.py"], ("/r", ["python3", "x.py"])),
    (["/usr/sbin/chroot", "--skip-chdir", "/r", "/usr/bin/python3"], ("/r", ["/usr/bin/python3"])),
    (["chroot", "--userspec=1:1", "/r", "python3"], ("/r", ["python3"])),
    (["chroot", "--userspec", "1:1", "--groups", "2,3", "/r", "python3"], ("/r", ["python3"])),
    (["chroot", "--", "/r", "python3", "-c", "pass"], ("/r", ["python3", "-c", "pass"])),
    (["chroot", "/r"], None),  # a shell
    (["python3", "chroot"], None),
])
def test_chroot_command_lines(argv, found):
    assert chrooted(argv) == found


@pytest.fixture
def root(tmp_path):
    """A merged-/usr root: /bin a link to /usr/bin (absolute, as some roots have it),
    python3 -> python3.13, a loop, and links to a file beside the root (which, followed on
    this machine's side, they would reach)."""
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.13").write_text("")
    (root / "usr/bin/python3").symlink_to("python3.13")
    (root / "bin").symlink_to("/usr/bin")
    (root / "usr/bin/loop").symlink_to("loop")
    outside = tmp_path / "outside"
    outside.write_text("")
    (root / "usr/bin/climbs").symlink_to("../../../outside")
    (root / "usr/bin/absolute").symlink_to(outside)
    return root


def test_links_followed_inside_the_root(root, monkeypatch):
    monkeypatch.setenv("PATH", "/nowhere:/bin")
    inside = str(root / "usr/bin/python3.13")
    assert resolve_in_root(str(root), "python3") == inside  # /bin/python3 -> /usr/bin/python3 -> python3.13
    assert resolve_in_root(str(root), "/bin/python3") == inside
    assert resolve_in_root(str(root), "bin/../bin/./python3") == inside


@pytest.mark.parametrize("command", ["climbs", "absolute", "loop", "/../outside", "../outside"])
def test_links_never_leave_the_root(root, monkeypatch, command):
    monkeypatch.setenv("PATH", "/usr/bin")
    with pytest.raises(CommandNotFound, match=f"command not found in {root}: "):
        resolve_in_root(str(root), command)
