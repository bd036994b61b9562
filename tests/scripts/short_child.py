"""A parent that, told to go, runs a child Python to its end, says `spawned` and the path it
ran, and exits when told again."""
import subprocess
import sys

sys.stdin.readline()
subprocess.run([sys.executable, "-c", "pass"], check=True)
print("spawned", sys.executable, flush=True)
sys.stdin.readline()
