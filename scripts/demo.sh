#!/usr/bin/env bash
# Set up .venv from scratch if needed and run the toolkit's main job.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
.venv/bin/hmr demo examples/ --out demo_out
