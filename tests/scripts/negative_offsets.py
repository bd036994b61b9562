"""py-spy's negative line offsets, anew: a thread asleep inside a call written over several
lines within a loop, whose line table steps back; the main thread prints the line CPython
itself gives for it (its frame's f_lineno), once the test says it sleeps: the truth dump is
compared with."""
import sys
import threading
import time

started = threading.Event()


def sleeper():
    for _ in range(3):
        started.set()
        (
            time
            .
            sleep(
                3600
            )
        )


if __name__ == "__main__":
    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    started.wait()
    print(thread.native_id, flush=True)
    sys.stdin.readline()  # the test says when the thread sleeps (this chroot may have no /proc to tell)
    frame = sys._current_frames()[thread.ident]
    print(frame.f_lineno, flush=True)
    sys.stdin.readline()
