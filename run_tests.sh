#!/usr/bin/env bash
# Set everything up (.venv) and run the test suite on the CPU. Extra arguments go to pytest.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$REPO_ROOT/setup_env.sh"
cd "$REPO_ROOT"
exec "$REPO_ROOT/.venv/bin/python" -m pytest "$@"
