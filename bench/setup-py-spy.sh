#!/usr/bin/env bash
# py-spy, the sampling profiler `make bench` compares profile with, from PyPI into a venv of its
# own (not the project's). Idempotent.
set -euo pipefail
PLACE=${PY_SPY_VENV:-/var/cache/pybpftrace-bench/py-spy}
if [ -x "$PLACE/bin/py-spy" ]; then
    echo "bench: py-spy: $("$PLACE/bin/py-spy" --version) ($PLACE)"
    exit 0
fi
echo "bench: installing py-spy from PyPI into $PLACE"
mkdir -p "$(dirname "$PLACE")"
/usr/bin/python3 -m venv "$PLACE"
"$PLACE/bin/pip" install --quiet --disable-pip-version-check py-spy
echo "bench: py-spy: $("$PLACE/bin/py-spy" --version)"
