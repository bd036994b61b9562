"""The spool: records written as they lie in a ring, read back in order, actions between them."""

import struct

from pybpftrace.spool import Spool

RECORD = struct.Struct("<8xQ")  # as drain_into hands it out: a header, then the record


def pieces(*values: int) -> bytes:
    return b"".join(RECORD.pack(value) for value in values)


def test_records_in_order_and_actions_where_marked(tmp_path):
    spool, seen = Spool(RECORD, str(tmp_path)), []
    spool.write(memoryview(pieces(1, 2, 3))[:20])  # a record split across two pieces
    spool.write(memoryview(pieces(1, 2, 3))[20:])
    spool.mark(lambda: seen.append("mark"))
    spool.write(memoryview(pieces(4, 5)))
    assert spool.waiting() == 5
    while records := spool.read(2):
        seen += [value for (value,) in records]
    assert seen == [1, 2, 3, "mark", 4, 5]
    assert spool.waiting() == 0
    spool.write(memoryview(pieces(6)))
    spool.mark(lambda: seen.append("end"))
    assert spool.read(10) == [(6,)] and seen[-1] == 5
    assert spool.read(10) == [] and seen[-1] == "end"
    assert list(tmp_path.iterdir()) == []  # no name on disk
    spool.close()
