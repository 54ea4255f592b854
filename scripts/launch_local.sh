#!/usr/bin/env bash
# Starts N es-toolkit processes on this machine, joined into one JAX runtime, each pinned
# to its own core when taskset is available. Process 0 coordinates on 127.0.0.1 (loopback
# only) and alone writes the run's files. Example:
#
#   scripts/launch_local.sh 2 train --env CartPole-v1 --out runs/two-processes
#   scripts/launch_local.sh 2 optimize --objective rastrigin --dim 1000 --population 512
#
# Every process gets the same arguments; stop them all with Ctrl-C.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 NUM_PROCESSES es-toolkit-subcommand [arguments...]" >&2
    exit 2
fi
num_processes=$1
shift
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < num_processes; i++)); do
    pin=()
    if command -v taskset > /dev/null; then pin=(taskset -c "$((i % $(nproc)))"); fi
    "${pin[@]}" "$python" -m es_toolkit.cli "$@" \
        --coordinator "127.0.0.1:$port" --num-processes "$num_processes" --process-id "$i" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
