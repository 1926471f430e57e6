#!/usr/bin/env bash
# Install facevid2vid and its dependencies into the current Python environment.
# constraints.txt pins torch to the CPU wheel; GPU users can install their own torch first.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,serve]"
