#!/usr/bin/env bash
# Set up, fetch the sample clips and run the demo with the bundled model into ./demo
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m facevid2vid demo --output demo "$@"
