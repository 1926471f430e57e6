#!/usr/bin/env bash
# Set up and run the default test suite (slow, data-hungry checks are excluded; run them with -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q "$@"
