"""A target whose names are payloads: terminal escapes (retitle, clipboard, clear screen),
C1 and bidirectional controls, and a line break that would forge a folded stack. `hold`
stops in the payload function (for dump and profile) in a thread named like one; `spin`
calls it until killed."""
import sys
import threading
import time

TITLE = "\x1b]0;PWNED\x07"
CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"
PAYLOAD = f"evil{TITLE}{CLIPBOARD}\x1b[2J\x9b2J\u202e\x00"  # NUL: curses refuses it
FORGED = "forged 1\nmain;evil 99999"
FILE = f"/tmp/{TITLE}.py"


def make(function, name, filename=FILE):
    function.__code__ = function.__code__.replace(co_name=name, co_filename=filename)
    return function


def inner():  # def inner
    return 1


def outer(hold):  # def outer
    total = sum(inner() for _ in range(3))
    while hold:
        time.sleep(0.01)
    return total


inner = make(inner, FORGED)
outer = make(outer, PAYLOAD)

if __name__ == "__main__":
    if sys.argv[1:] == ["spin"]:  # busy in the payload functions until killed (top's live screen)
        while True:
            outer(False)
    hold = sys.argv[1:] == ["hold"]
    if hold:
        thread = threading.Thread(target=outer, args=(True,), name=f"worker{TITLE}\n", daemon=True)
        thread.start()
        print("ready", flush=True)
    sys.stdin.readline()  # wait for the tracer
    print(outer(False))
