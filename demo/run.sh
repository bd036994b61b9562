#!/usr/bin/env bash
# The demo: trace the bundled workload under Debian's --with-dtrace CPython 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBPFTRACE=${VENV:-.venv}/bin/pybpftrace
OUT=demo-output
mkdir -p "$OUT"

/usr/bin/python3.11 demo/workload.py &
WORKLOAD=$!
trap 'kill $WORKLOAD 2>/dev/null || true' EXIT
sleep 1

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "pybpftrace list $WORKLOAD"
"$PYBPFTRACE" list "$WORKLOAD" | sed -n 1,8p

step "pybpftrace stack $WORKLOAD --function handle_request --durations --duration 0.1"
"$PYBPFTRACE" stack "$WORKLOAD" --function handle_request --durations --duration 0.1

step "pybpftrace stack $WORKLOAD --folded --duration 3 -o $OUT/workload.folded"
"$PYBPFTRACE" stack "$WORKLOAD" --folded --duration 3 -o "$OUT/workload.folded"
echo "folded stacks: $OUT/workload.folded ($(wc -l < "$OUT/workload.folded") stacks); the three heaviest:"
awk '{print $NF "\t" $0}' "$OUT/workload.folded" | sort -n -r | sed -n 1,3p | cut -f2-

FLAMEGRAPH=""
for candidate in ../shared/tools/flamegraph.pl "${FLAMEGRAPH_PL:-}" "$(command -v flamegraph.pl || true)"; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then FLAMEGRAPH=$candidate; break; fi
done
if [ -n "$FLAMEGRAPH" ]; then
    perl "$FLAMEGRAPH" --title "pybpftrace demo workload" "$OUT/workload.folded" > "$OUT/workload.svg"
    echo "flame graph: $OUT/workload.svg"
else
    echo "flamegraph.pl not found (FlameGraph's script): render with flamegraph.pl $OUT/workload.folded > out.svg"
fi
