#!/usr/bin/env bash
# Set everything up (.venv) and run the test suite on the CPU. Extra arguments go to pytest.
#   bash run_tests.sh          # the fast tests (the slow end-to-end ones are left out)
#   bash run_tests.sh --all    # every test, the slow end-to-end ones included (what CI runs)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$REPO_ROOT/setup_env.sh"
cd "$REPO_ROOT"
SELECT=(-m "not slow")
if [ "${1:-}" = "--all" ]; then SELECT=(); shift; fi
exec "$REPO_ROOT/.venv/bin/python" -m pytest "${SELECT[@]}" "$@"
