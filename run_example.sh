#!/usr/bin/env bash
# Set everything up (.venv) and run the whole pipeline end to end on a built-in example, on the CPU:
# generated contractor data served on 127.0.0.1 -> step 1 -> step 2 -> step 3 (tiny model) -> evaluation.
# Output goes to ./example_run (or the directory given as the first argument).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$REPO_ROOT/setup_env.sh"
cd "$REPO_ROOT"
exec "$REPO_ROOT/.venv/bin/python" examples/end_to_end.py --workdir "${1:-example_run}"
