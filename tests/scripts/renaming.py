"""threading changed all the time: a thread renaming itself between two names, and one that
starts and joins short-lived threads (named churn-...) in rounds, so that threading._active
gains and loses entries, and grows and shrinks its table. Writes a JSON line {name: ident} of
the lasting threads, then `ready`; exits on stdin's end."""
import json
import sys
import threading
import time


def flipper():  # def flipper
    me = threading.current_thread()
    while True:
        me.name = "flip-a"
        me.name = "flip-b"


def churner():  # def churner
    rounds = 0
    while True:
        rounds += 1
        threads = [threading.Thread(target=time.sleep, args=(0.001,), name=f"churn-{rounds}-{number}", daemon=True)
                   for number in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


if __name__ == "__main__":
    lasting = {"flip": threading.Thread(target=flipper, name="flip-a", daemon=True),
               "churner": threading.Thread(target=churner, name="churner", daemon=True)}
    for thread in lasting.values():
        thread.start()
    idents = {role: thread.ident for role, thread in lasting.items()}
    idents["main"] = threading.get_ident()
    sys.stdout.write(json.dumps(idents) + "\nready\n")
    sys.stdout.flush()
    sys.stdin.read()
