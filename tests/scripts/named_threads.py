"""Threads with names of every kind, all asleep: named in ASCII, latin-1, UCS-2 and UCS-4, too
long, a default name, renamed after it started, its attributes in a dict of their own (read
through __dict__, or too many to share their class's keys), a dummy thread (a foreign thread
threading met) and a thread threading never knew. Writes a JSON line {role: ident} (ident:
threading.get_ident(), pthread_self()), then `ready`; exits on stdin's end."""
import _thread
import json
import sys
import threading
import time

idents = {}


def idle(role):  # def idle
    idents[role] = _thread.get_ident()
    time.sleep(3600)


def dummy():
    threading.current_thread()  # makes a _DummyThread: in threading._active, named Dummy-N
    idle("dummy")


if __name__ == "__main__":
    default = threading.Thread(target=idle, args=("default",), daemon=True)  # Thread-1 (idle); before 3.10 Thread-1
    named = {"ascii": "worker-1", "latin-1": "caf\xe9-worker", "ucs2": "worker-\u03b1", "ucs4": "snake-\U0001f40d",
             "long": "long-" + "x" * 300, "renamed": "before", "dict-read": "dict-read",
             "many-attributes": "many-attributes"}
    threads = {role: threading.Thread(target=idle, args=(role,), name=name, daemon=True)
               for role, name in named.items()}
    vars(threads["dict-read"])  # its attributes now in a dict of their own (3.11+: made from its values)
    for number in range(40):  # more than the 30 keys a class's instances share (3.11+)
        setattr(threads["many-attributes"], f"extra_{number}", number)
    for thread in [default, *threads.values()]:
        thread.start()
    threads["renamed"].name = "renamed"
    _thread.start_new_thread(dummy, ())
    _thread.start_new_thread(idle, ("unknown to threading",))
    idents["main"] = _thread.get_ident()
    while len(idents) < len(named) + 4:
        time.sleep(0.01)
    sys.stdout.write(json.dumps(idents) + "\nready\n")
    sys.stdout.flush()
    sys.stdin.read()
