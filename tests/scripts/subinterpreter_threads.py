"""Threads of two interpreters: a worker started in a subinterpreter (where it may start
threads: 3.8, 3.12+), one in the main interpreter, and the main thread, which the
subinterpreter's threading names "sub-main". Writes a JSON line {name: ident}, then `ready`;
exits on stdin's end."""
import json
import os
import sys
import threading
import time

try:
    import _interpreters as interpreters  # 3.13+
except ImportError:
    import _xxsubinterpreters as interpreters  # 3.8 to 3.12

CODE = """
import os, threading, time
try:
    worker = threading.Thread(target=time.sleep, args=(3600,), name="sub-worker")
    worker.start()
    ident = worker.ident
except RuntimeError:  # 3.9 to 3.11: no threads in a subinterpreter
    ident = 0
threading.current_thread().name = "sub-main"
os.write({fd}, str(ident).encode())
"""

if __name__ == "__main__":
    read_end, write_end = os.pipe()
    interpreter = interpreters.create()
    interpreters.run_string(interpreter, CODE.format(fd=write_end))
    sub_worker = int(os.read(read_end, 64))
    worker = threading.Thread(target=time.sleep, args=(3600,), name="main-worker", daemon=True)
    worker.start()
    idents = {"MainThread": threading.get_ident(), "main-worker": worker.ident}
    if sub_worker:
        idents["sub-worker"] = sub_worker
    sys.stdout.write(json.dumps(idents) + "\nready\n")
    sys.stdout.flush()
    sys.stdin.read()
    os._exit(0)  # without waiting for the subinterpreter's thread
