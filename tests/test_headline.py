"""The README's headline numbers hold: AFLW2000-3D-16 68-point NME (ground-truth boxes) and the
james scan RMSE of the default method, within 5 % of what the README's benchmark table says, so a
regression of the pipeline cannot pass unnoticed. Update both here and in the README when a
measured change moves them."""
from __future__ import annotations

import pytest

from facerecon.evaluation.runner import evaluate

# README, "Current: our own landmark runtime and --method dense" (2026-12-01)
README_AFLW16_NME = 0.0476      # fit, AFLW2000-3D-16, GT box
README_JAMES_RMSE_MM = 1.73     # fit, james scan, RMSE after ICP (similarity)
TOLERANCE = 0.05


def test_headline_numbers_hold(tmp_path, shared):
    result = {r.name: r.summary["fit"] for r in
              evaluate(tmp_path, protocols=("aflw", "scan"), methods=("fit",), with_peer=False, log=lambda _: None).results}
    assert result["aflw"]["nme2d"] == pytest.approx(README_AFLW16_NME, rel=TOLERANCE)
    assert result["scan"]["rmse_mm similarity"] == pytest.approx(README_JAMES_RMSE_MM, rel=TOLERANCE)
