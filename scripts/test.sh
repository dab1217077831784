#!/usr/bin/env bash
# Set up .venv from scratch if needed, lint, and run the whole test suite (slow tests included).
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip tests marked slow
# Further arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
marker=()
if [ "${1:-}" = "--quick" ]; then
  marker=(-m "not slow")
  shift
fi
.venv/bin/ruff check hmr tests benchmarks tools
.venv/bin/python -m pytest "${marker[@]}" "$@"
