"""The ``objects`` evaluation protocol on the shared multi-view objects, as a smoke run: the dino's
held-out silhouettes and a dozen fox frames through structure from motion, against their shipped
cameras (about half a minute)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import require_data

pytest.importorskip("pycolmap")


def test_objects_protocol_smoke(eval_dir, tmp_path):
    require_data(eval_dir / "multiview-objects" / "fox" / "transforms.json", "fox frames with cameras")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "facerecon", "evaluate", "--smoke", "--no-peer", "--protocol",
                             "objects", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    objects = json.loads((out / "report.json").read_text())["protocols"]["objects"]
    dino, fox = objects["rows"]
    assert len(dino["held_out_iou"]) == 4 and min(dino["held_out_iou"].values()) > 0.7, dino["held_out_iou"]
    assert fox["registered"] == fox["frames"] == 12
    # structure from motion's cameras match the shipped ones after a similarity
    assert fox["centre_median_pct"] < 2.0 and fox["orientation_median_deg"] < 2.0, fox
    assert abs(fox["focal_px"] / fox["shipped_focal_px"] - 1) < 0.1, fox
    assert objects["summary"]["scan"]["dino held-out IoU"] == pytest.approx(dino["iou_mean"], abs=1e-6)
    for name in ("dino", "fox"):
        assert (out / "objects" / f"{name}_turntable.gif").stat().st_size > 10_000
