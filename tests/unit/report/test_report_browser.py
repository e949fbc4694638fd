"""Open the HTML report in headless Chromium and check that every figure rendered.

Needs a Chromium binary (Debian: ``apt-get install chromium``); skipped with a reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from oncolabel.report import ReportSettings, build_report, read_predictions_csv, read_survival_csv, write_report

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# After load, list every image's alt text and natural size into a DOM node that --dump-dom prints.
_PROBE = """<script>window.addEventListener("load", function () {
  var out = document.createElement("pre"); out.id = "img-probe";
  out.textContent = JSON.stringify([].map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}; }));
  document.body.appendChild(out); });</script>"""
# A deliberately broken image proves the probe can fail.
_BROKEN = '<img alt="broken-control" src="data:image/png;base64,AAAA">'


def _chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    return next((shutil.which(c) for c in _CANDIDATES if shutil.which(c)), None)


def test_every_figure_renders_in_chromium(study_csvs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium/Chrome binary on PATH (apt-get install chromium, or set CHROMIUM)")
    report = build_report(read_predictions_csv(study_csvs["predictions"]), read_survival_csv(study_csvs["survival"]),
                          settings=ReportSettings(n_boot=100))
    page = write_report(report, tmp_path / "report.html")[0].read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _BROKEN + _PROBE + "</body>"), encoding="utf-8")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r'<pre id="img-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe output from {browser} (rc {proc.returncode}): {proc.stderr[-2000:]}"
    images = {i["alt"]: i for i in json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))}
    assert images.pop("broken-control")["w"] == 0  # the probe does detect a broken image
    assert set(images) == {"ROC curves", "Calibration", "Decision curves", "Disease-free survival"}
    for alt, img in images.items():
        assert img["complete"] and img["w"] > 100 and img["h"] > 100, f"figure {alt!r} did not render: {img}"
