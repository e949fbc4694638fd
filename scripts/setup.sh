#!/usr/bin/env bash
# Create .venv/ at the repository root with the pinned environment (idempotent; no network beyond package indexes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.oncolabel-setup-$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  pip install -q --disable-pip-version-check --upgrade pip wheel setuptools
  pip install -q torch==2.14.1 torchvision==0.29.1
  pip install -q numpy==1.26.4 versioneer==0.29
  python -c "import radiomics" 2>/dev/null || pip install -q --no-build-isolation pyradiomics==3.0.1
  pip install -q -r requirements.txt
  pip install -q --no-deps -e .
  touch "$stamp"
fi
# Headless Chromium renders the HTML reports in one test; install it when we may (CI runs as root).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${ONCOLABEL_SKIP_APT:-0}" != 1 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: chromium could not be installed; the browser test will be skipped"
  fi
fi
# A real PACS (Orthanc + DICOMweb) for the PACS tests; skipped without it.
if ! command -v Orthanc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${ONCOLABEL_SKIP_APT:-0}" != 1 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        orthanc orthanc-dicomweb >/dev/null) \
      || echo "setup: Orthanc could not be installed; the PACS tests will be skipped"
    # the tests start their own Orthanc on 127.0.0.1; no system service is wanted
    (systemctl disable --now orthanc || service orthanc stop) >/dev/null 2>&1 || true
  fi
fi
# dcmtk compresses real DICOM in the compressed-input test (JPEG lossless, JPEG-LS, RLE); skipped without it.
if ! command -v dcmcjpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${ONCOLABEL_SKIP_APT:-0}" != 1 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        dcmtk >/dev/null) || echo "setup: dcmtk could not be installed; the compressed-DICOM test will be skipped"
  fi
fi
python -c "import oncolabel, monailabel, radiomics, torch; print('setup: oncolabel', oncolabel.__version__, '| torch', torch.__version__)"
