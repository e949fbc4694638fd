#!/usr/bin/env bash
# Regenerate the sample bone-metastasis cohort and its checksums.
#
#   sample-data/regenerate.sh           rewrite sample-data/bone-metastasis and SHA256SUMS
#   sample-data/regenerate.sh --check   regenerate into a temporary folder and compare with SHA256SUMS
#
# The Python interpreter is $ONCOLABEL_PYTHON, else the repository's .venv, else python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
py="${ONCOLABEL_PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi

# The one command that makes the sample data (seed 22: 5 cases, all four regions, 3 with metastases).
generate() {
  "$py" -m oncolabel phantoms bone-metastasis --n 5 --seed 22 --matrix 320 --thickness 5 --z-mm 100 \
    --out "$1/bone-metastasis"
}

# manifest.json is left out: it records the creation time and the platform.
checksums() {
  (cd "$1" && find bone-metastasis -type f ! -name manifest.json | LC_ALL=C sort | xargs sha256sum)
}

if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp" >/dev/null
  checksums "$tmp" > "$tmp/SHA256SUMS"
  if diff -u "$here/SHA256SUMS" "$tmp/SHA256SUMS"; then
    echo "sample data reproduced exactly"
  else
    echo "sample data differs from SHA256SUMS (generator or library versions changed?)" >&2
    exit 1
  fi
  exit 0
fi

rm -rf "$here/bone-metastasis"
generate "$here"
checksums "$here" > "$here/SHA256SUMS"
(cd "$here" && sha256sum -c --quiet SHA256SUMS)
du -sh "$here/bone-metastasis"
