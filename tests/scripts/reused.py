"""Functions made by exec, each run in a thread of its own, then freed, so that a new code
object often takes a freed one's address; then, per function, its thread's TID and its code
object's address, as JSON."""
import ctypes
import json
import sys
import threading
import time


def native_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return ctypes.CDLL(None).syscall(186)  # gettid, x86-64


def burn():  # def burn
    end = time.thread_time() + 0.01
    while time.thread_time() < end:
        pass


def run(function, results, index):
    results[index] = [native_id()]
    function(burn)


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    results = {}
    for index in range(int(sys.argv[1])):
        namespace = {}
        exec(f"def uniq_{index}(burn):\n    burn()\n", namespace)
        function = namespace[f"uniq_{index}"]
        thread = threading.Thread(target=run, args=(function, results, index))
        thread.start()
        thread.join()
        results[index].append(id(function.__code__))
        del function, namespace
    sys.stdout.write(json.dumps(results) + "\n")
