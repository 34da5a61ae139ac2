#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (what CI runs).
#   bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n "${STIMAGE_TEST_WORKERS:-2}" "$@"
