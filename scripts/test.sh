#!/usr/bin/env bash
# Set up everything the tests need (see setup.sh), then run the whole suite. Extra arguments go to
# pytest: `scripts/test.sh tests/data/test_loading.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
