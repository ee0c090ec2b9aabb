"""The README's headline numbers hold: AFLW2000-3D-16 68-point NME (ground-truth boxes) and the
james scan RMSE of the default method, within 5 % of what the README's benchmark table says, so a
regression of the pipeline cannot pass unnoticed. Update both here and in the README when a
measured change moves them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from facerecon.evaluation.runner import evaluate
from facerecon.methods import DEFAULT_METHOD

README = Path(__file__).resolve().parents[1] / "README.md"
# README, Benchmarks, "Accuracy: auto, fit and dense" (2026-12-06)
README_AFLW16_NME = 0.0430      # auto, AFLW2000-3D-16, GT box
README_JAMES_RMSE_MM = 1.57     # auto, james scan, RMSE after ICP (similarity)
TOLERANCE = 0.05


def test_headline_numbers_hold(tmp_path, shared):
    result = {r.name: r.summary[DEFAULT_METHOD] for r in
              evaluate(tmp_path, protocols=("aflw", "scan"), methods=(DEFAULT_METHOD,), with_peer=False,
                       log=lambda _: None).results}
    assert result["aflw"]["nme2d"] == pytest.approx(README_AFLW16_NME, rel=TOLERANCE)
    assert result["scan"]["rmse_mm similarity"] == pytest.approx(README_JAMES_RMSE_MM, rel=TOLERANCE)


def _readme_cell(row_label: str) -> str:
    """The default method's column (the first value) of the README's accuracy-table row ``row_label``."""
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == row_label:
            return cells[1]
    raise AssertionError(f"README.md has no table row {row_label!r}")


def test_readme_states_the_pinned_numbers():
    """The numbers pinned above are the ones the README's accuracy table shows."""
    aflw = re.fullmatch(r"\*{0,2}([\d.]+) %\*{0,2}", _readme_cell("AFLW2000-3D-16, GT box"))
    james = re.fullmatch(r"\*{0,2}([\d.]+) mm\*{0,2}", _readme_cell("james scan, RMSE after ICP"))
    assert aflw and float(aflw.group(1)) / 100 == pytest.approx(README_AFLW16_NME)
    assert james and float(james.group(1)) == pytest.approx(README_JAMES_RMSE_MM)
