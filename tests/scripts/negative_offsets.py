"""py-spy's negative line offsets, anew: a thread asleep inside a call written over several
lines within a loop, whose line table steps back; the main thread prints the line CPython
itself gives for it (its frame's f_lineno), the truth dump is compared with."""
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
    time.sleep(0.2)  # into the sleep
    frame = sys._current_frames()[thread.ident]
    print(thread.native_id, frame.f_lineno, frame.f_back.f_lineno if frame.f_back else 0, flush=True)
    sys.stdin.readline()
