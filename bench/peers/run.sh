#!/usr/bin/env bash
# Side-by-side benchmark: conveyor against the peer task queues (docs/benchmarks.md).
#   bash bench/peers/run.sh [--quick] [--reps N] [--tasks N] [--no-growth] [--systems a,b]
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=bench/.venv-peers
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -U pip
fi
if [ ! -f "$VENV/.installed" ] || [ bench/peers/requirements.txt -nt "$VENV/.installed" ] \
        || [ pyproject.toml -nt "$VENV/.installed" ]; then
    "$VENV/bin/pip" install -q -r bench/peers/requirements.txt
    "$VENV/bin/pip" install -q -e .
    touch "$VENV/.installed"
fi
exec "$VENV/bin/python" -m bench.peers.main "$@"
