"""Forks N children that exit at once, one after another, when told (a line on stdin); then
says how many it forked."""
import os
import sys

N = int(sys.argv[1])

sys.stdin.readline()
for _ in range(N):
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
print(N, flush=True)
