"""Processes gone before they were looked at: the tree of a root's descendants kept from fork
events, what counts as a Python by name, and the note that says what is missing."""

from pybpftrace.sampling import Selection
from pybpftrace.unread import PROGRAMS_KEPT, ProcessTree, Unread, looks_like_python, program_name


def test_the_tree_takes_children_of_members_and_lets_a_reused_pid_go():
    tree = ProcessTree({10})
    tree.born(11, 10)
    tree.born(12, 11)
    tree.born(13, 99)
    assert [pid in tree for pid in (10, 11, 12, 13)] == [True, True, True, False]
    tree.born(12, 99)  # 12 exited, and its PID went to a process born elsewhere
    assert 12 not in tree
    tree.add([20])
    tree.born(21, 20)
    assert 21 in tree


def test_a_program_is_the_path_up_to_its_nul_undecodable_bytes_kept():
    assert program_name(b"/usr/bin/python3.11\0\0garbage") == "/usr/bin/python3.11"
    assert program_name(b"/tmp/\xff\x1b[31m") == "/tmp/\udcff\x1b[31m"


def test_python_by_name_the_chosen_names_else_python_anything():
    assert looks_like_python("/usr/bin/python3.11", frozenset())
    assert not looks_like_python("/usr/bin/ls", frozenset())
    assert looks_like_python("/opt/app/uwsgi", frozenset({"uwsgi"}))
    assert not looks_like_python("/usr/bin/python3", frozenset({"uwsgi"}))


def test_the_note_names_the_most_frequent_programs_escaped():
    unread = Unread()
    assert unread.notes() == []
    unread.add("/usr/bin/python3.11")
    assert unread.notes() == [
        "1 process exited before pybpftrace could see what it ran (/usr/bin/python3.11): "
        "if it was a Python, its stacks are not read"]
    for program in ["/usr/bin/python3.11", "/bin/ls", "/bin/ls", "/bin/ls", "/tmp/\x1b[31m", "/bin/true", ""]:
        unread.add(program)
    assert len(unread) == 8
    assert unread.notes() == [
        "8 processes exited before pybpftrace could see what they ran (/bin/ls ×3, /usr/bin/python3.11 ×2, "
        "/tmp/\\x1b[31m, 2 more): the stacks of any Python among them are not read"]


def test_ever_new_programs_are_counted_past_those_kept_by_name():
    unread = Unread()
    for n in range(PROGRAMS_KEPT + 10):
        unread.add(f"/tmp/p{n}")
    unread.add("/tmp/p0")
    assert len(unread) == PROGRAMS_KEPT + 11
    assert unread.notes()[0].startswith(f"{PROGRAMS_KEPT + 11} processes exited before pybpftrace could see what they "
                                        f"ran (/tmp/p0 ×2, /tmp/p1, /tmp/p2, {PROGRAMS_KEPT + 7} more)")


def test_the_tree_lets_exited_processes_go_once_large():
    alive = set(range(0, 100, 2))
    tree = ProcessTree({0}, alive=alive.__contains__, prune_at=100)
    for child in range(1, 99):
        tree.born(child, 0)
    assert len(tree) == 99
    tree.born(99, 0)  # the hundredth: those that exited are set apart
    assert len(tree) == 50 and 98 in tree and 97 in tree  # its exec may be yet to be heard of
    for child in range(100, 149):
        tree.born(child, 0)
    assert len(tree) == 99  # the next pruning at twice as many as were left, 100
    alive.update(range(100, 148))
    tree.born(149, 0)  # the second pruning: 148 and 149 exited; those of the first go for good
    assert len(tree) == 98 and 148 in tree and 97 not in tree
    tree.born(148, 5000)  # a process born elsewhere took a PID set apart
    assert 148 not in tree


def test_binary_names_are_the_paths_as_named_and_where_they_lead(tmp_path):
    (tmp_path / "python3.11").write_text("")
    (tmp_path / "python3").symlink_to("python3.11")
    selection = Selection([], named=(str(tmp_path / "python3"),))
    assert selection.names == frozenset({"python3", "python3.11"})
    assert looks_like_python("/usr/bin/python3", selection.names)
