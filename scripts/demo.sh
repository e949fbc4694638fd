#!/usr/bin/env bash
# Set everything up (first run only) and run the demo: the MONAI Label server over the sample studies, driven
# as a client would (next sample -> infer -> corrected label -> training round -> infer again).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec oncolabel demo "$@"
