#!/usr/bin/env bash
# The demo: the bundled workload under the release's --with-dtrace CPython, its stacks read out of
# its memory (dump, profile), then traced exactly through its probes and its evaluator (stack).
# Debian 12's python3.11 has function probes; Debian 13's python3.13 has none (CPython 3.12 to
# 3.14 dropped them), so there every exact step follows calls through its evaluator instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBPFTRACE=${VENV:-.venv}/bin/pybpftrace
OUT=demo-output
mkdir -p "$OUT"

# This machine's CPythons (/usr/bin/python3.N), newest first, and which have function probes.
pythons() { find /usr/bin -maxdepth 1 -regex '/usr/bin/python3\.[0-9]+' | sort -t. -k2,2nr; }
has_function_probes() { "$PYBPFTRACE" list "$1" 2>/dev/null | grep 'python:function__entry$' >/dev/null; }
PYTHON="" ROUTE=()
for candidate in $(pythons); do
    if has_function_probes "$candidate"; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ]; then
    PYTHON=$(pythons | sed -n 1p)
    [ -n "$PYTHON" ] || { echo "demo: no /usr/bin/python3.N on this machine: run make setup" >&2; exit 1; }
    # Attached by PID, the eval-frame route hooks the evaluator (--eval-hook says it may).
    ROUTE=(--route eval-frame --eval-hook)
    echo "demo: $PYTHON has no function probes (CPython 3.12 to 3.14 dropped them): the exact steps follow its calls through its evaluator (the eval-frame route)"
fi

"$PYTHON" demo/workload.py &
WORKLOAD=$!
trap 'kill $WORKLOAD 2>/dev/null || true' EXIT
sleep 1
kill -0 "$WORKLOAD" 2>/dev/null || { echo "demo: $PYTHON demo/workload.py exited at once" >&2; exit 1; }

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "pybpftrace dump $WORKLOAD"
"$PYBPFTRACE" dump "$WORKLOAD"

step "pybpftrace profile $WORKLOAD --wall --duration 3 -o $OUT/profile.folded -o $OUT/profile.svg"
"$PYBPFTRACE" profile "$WORKLOAD" --wall --duration 3 -o "$OUT/profile.folded" -o "$OUT/profile.svg"
echo "on and off the CPU, by stack ($OUT/profile.folded); the three heaviest, in microseconds:"
awk '{print $NF "\t" $0}' "$OUT/profile.folded" | sort -n -r | sed -n 1,3p | cut -f2-

step "pybpftrace list $WORKLOAD"
"$PYBPFTRACE" list "$WORKLOAD" | sed -n 1,8p

step "pybpftrace stack $WORKLOAD ${ROUTE[*]:+${ROUTE[*]} }--function handle_request --durations --duration 0.1"
"$PYBPFTRACE" stack "$WORKLOAD" "${ROUTE[@]}" --function handle_request --durations --duration 0.1

step "pybpftrace stack $WORKLOAD --route eval-frame --eval-hook --function discount --duration 0.1"
"$PYBPFTRACE" stack "$WORKLOAD" --route eval-frame --eval-hook --function discount --duration 0.1 | sed -n 1,9p
echo "(the same calls through the interpreter's evaluator: the route CPython 3.12 to 3.14 need, and any build)"

step "pybpftrace stack $WORKLOAD ${ROUTE[*]:+${ROUTE[*]} }--duration 3 -o $OUT/workload.folded -o $OUT/workload.svg"
"$PYBPFTRACE" stack "$WORKLOAD" "${ROUTE[@]}" --duration 3 -o "$OUT/workload.folded" -o "$OUT/workload.svg"
echo "folded stacks: $OUT/workload.folded ($(wc -l < "$OUT/workload.folded") stacks); the three heaviest:"
awk '{print $NF "\t" $0}' "$OUT/workload.folded" | sort -n -r | sed -n 1,3p | cut -f2-

step "pybpftrace stack $WORKLOAD ${ROUTE[*]:+${ROUTE[*]} }--duration 0.5 -o $OUT/workload.trace.json"
"$PYBPFTRACE" stack "$WORKLOAD" "${ROUTE[@]}" --duration 0.5 -o "$OUT/workload.trace.json"

cat <<EOF

wall-clock profile, read out of the interpreter's memory: $OUT/profile.svg
flame graph of every call, exact (pybpftrace's own, interactive): $OUT/workload.svg
  open it in a web browser: xdg-open $OUT/workload.svg, or file://$PWD/$OUT/workload.svg
  (hover for details, click a frame to zoom, type in the search field to highlight)
timeline of every call: $OUT/workload.trace.json
  open it in Perfetto (https://ui.perfetto.dev, "Open trace file") or chrome://tracing
pybpftrace itself is on PATH: $(command -v pybpftrace || echo "not found: run make setup")
EOF
