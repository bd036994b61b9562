#!/usr/bin/env bash
# The demo: the bundled workload under Debian's --with-dtrace CPython 3.11, its stacks read out of
# its memory (dump, profile), then traced exactly through its probes and its evaluator (stack).
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

step "pybpftrace dump $WORKLOAD"
"$PYBPFTRACE" dump "$WORKLOAD"

step "pybpftrace profile $WORKLOAD --wall --duration 3 -o $OUT/profile.folded -o $OUT/profile.svg"
"$PYBPFTRACE" profile "$WORKLOAD" --wall --duration 3 -o "$OUT/profile.folded" -o "$OUT/profile.svg"
echo "on and off the CPU, by stack ($OUT/profile.folded); the three heaviest, in microseconds:"
awk '{print $NF "\t" $0}' "$OUT/profile.folded" | sort -n -r | sed -n 1,3p | cut -f2-

step "pybpftrace list $WORKLOAD"
"$PYBPFTRACE" list "$WORKLOAD" | sed -n 1,8p

step "pybpftrace stack $WORKLOAD --function handle_request --durations --duration 0.1"
"$PYBPFTRACE" stack "$WORKLOAD" --function handle_request --durations --duration 0.1

step "pybpftrace stack $WORKLOAD --route eval-frame --eval-hook --function discount --duration 0.1"
"$PYBPFTRACE" stack "$WORKLOAD" --route eval-frame --eval-hook --function discount --duration 0.1 | sed -n 1,9p
echo "(the same calls through the interpreter's evaluator: the route CPython 3.12 to 3.14 need, and any build)"

step "pybpftrace stack $WORKLOAD --duration 3 -o $OUT/workload.folded -o $OUT/workload.svg"
"$PYBPFTRACE" stack "$WORKLOAD" --duration 3 -o "$OUT/workload.folded" -o "$OUT/workload.svg"
echo "folded stacks: $OUT/workload.folded ($(wc -l < "$OUT/workload.folded") stacks); the three heaviest:"
awk '{print $NF "\t" $0}' "$OUT/workload.folded" | sort -n -r | sed -n 1,3p | cut -f2-

step "pybpftrace stack $WORKLOAD --duration 0.5 -o $OUT/workload.trace.json"
"$PYBPFTRACE" stack "$WORKLOAD" --duration 0.5 -o "$OUT/workload.trace.json"

cat <<EOF

wall-clock profile, read out of the interpreter's memory: $OUT/profile.svg
flame graph of every call, exact (pybpftrace's own, interactive): $OUT/workload.svg
  open it in a web browser: xdg-open $OUT/workload.svg, or file://$PWD/$OUT/workload.svg
  (hover for details, click a frame to zoom, type in the search field to highlight)
timeline of every call: $OUT/workload.trace.json
  open it in Perfetto (https://ui.perfetto.dev, "Open trace file") or chrome://tracing
pybpftrace itself is on PATH: $(command -v pybpftrace || echo "not found: run make setup")
EOF
