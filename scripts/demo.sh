#!/usr/bin/env bash
# Install stimage into .venv and run the demo on the bundled example.
#   bash scripts/demo.sh [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/stimage demo "$@"
