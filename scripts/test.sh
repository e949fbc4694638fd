#!/usr/bin/env bash
# Run the default test suite (unit + integration against the real server; `slow` and `gpu` excluded).
# Extra arguments go to pytest, e.g. scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec python -m pytest --timeout 900 "$@"
