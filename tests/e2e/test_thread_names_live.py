"""Python's thread names read out of a live process while threading changes under the reader
(pybpftrace/thread_names.py, without the kernel: dump's own tests read them through dump):
a name is shown right or not at all, never another thread's."""

from pybpftrace.sampling import walked_binary
from pybpftrace.target import process_binaries
from pybpftrace.thread_names import python_thread_names
from support import Target, idents_when_ready

READS = 200


def test_names_stay_right_while_threading_changes(every_interpreter):
    with Target("renaming.py", interpreter=every_interpreter) as target:
        idents = idents_when_ready(target)
        (binary,) = [binary for binary in process_binaries(target.pid) if binary.interpreter]
        walked = walked_binary(binary)
        reads = [python_thread_names(target.pid, walked) for _ in range(READS)]
    allowed = {idents["main"]: {"MainThread"}, idents["flip"]: {"flip-a", "flip-b"}, idents["churner"]: {"churner"}}
    seen = {ident: set() for ident in allowed}
    for names in reads:
        for ident, name in names.items():
            if ident in allowed:
                assert name in allowed[ident], (ident, name)
                seen[ident].add(name)
            else:  # a short-lived thread (their idents are reused)
                assert name.startswith("churn-"), (ident, name)
    # each lasting thread named in some read (a read may find _active's table being replaced)
    assert all(seen.values()), seen
