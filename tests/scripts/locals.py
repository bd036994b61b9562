"""py-spy's local_vars.py, anew: a function whose arguments and locals hold each kind of value
dump --locals shows, then sleeps. It prints repr() of each (those repr() prints within dump's
bounds) as JSON, for the test to compare."""
import json
import sys
import time


class Thing:
    pass


def local_variable_lookup(arg1="foo", arg2=None, *args, keyword=b"\x00raw", **options):
    integer = 42
    huge = 2**200 - 12345
    negative = -123456789012345678901234567890
    ratio = 0.1 + 0.2
    text = "héllo\n'quoted' ☃"
    data = b"\x00abc\xff"
    single = (1,)
    pair = (None, True, False)
    nested = [1, [2.5, {"k": (3, "v")}], "x"]
    mapping = {"a": 1, 2: None, (1, 2): frozenset({7})}
    numbers = {3}
    empty_set = set()
    empty = frozenset()
    thing = Thing()
    long_text = "x" * 500
    many = list(range(100))
    deep = [[[[[1]]]]]

    def captured():
        return integer

    shown = {name: repr(value) for name, value in locals().items()
             if name not in ("long_text", "many", "thing", "captured", "deep")}
    print(json.dumps(shown), flush=True)
    time.sleep(3600)  # sleeps


if __name__ == "__main__":
    local_variable_lookup("foo", [1, 2], 3, 4, keyword=b"\x00raw", option="on")
