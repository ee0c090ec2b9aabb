"""From what yaw, and how many times, should ``dense`` read a turned face's points again from the
crop its own points ask for (``methods.dense.RECROP_FROM_YAW``, ``RECROP_PASSES``)? Measured on the
calibration data only, the faces ``calibrate_auto_method.py`` makes: helen_train's held-out faces
(every ``--every``-th, 68-point NME by the interocular distance) and renders of heads the evaluation
does not use (``first=100``: 68-point NME by the box, and the fitted head's dense RMSE). Each face is
reconstructed by ``dense`` once per number of extra passes, whatever its yaw, and the table is
binned by the PnP yaw of the points before any extra pass (what ``dense`` decides by). The table is
in docs/landmarks.md.

    python scripts/calibrate_recrop.py [--every 4] [--identities 8] [--passes 0,1,2,4]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from calibrate_auto_method import helen_faces, render_faces   # the same calibration faces
from facerecon.evaluation.metrics import nme
from facerecon.evaluation.protocols import dense_rmse, reconstruct
from facerecon.methods import dense
from facerecon.pipeline import Reconstructor

BINS = (0.0, 20.0, 30.0, 40.0, 45.0, 50.0, 55.0, 65.0, 95.0)


def scores(run, passes, image, detection, camera, truth68, norm, vertices=None) -> tuple[float, dict] | None:
    """(|PnP yaw| of the points before any extra pass, {passes: (NME, dense RMSE mm or nan)}) of
    one face; None where ``dense`` trusts no points of it (or, for some value, falls back)."""
    method = run.get_method("dense")
    base = method.estimator.estimate(image, detection)
    if base is None or base.presence < dense.MIN_PRESENCE:
        return None
    out = {}
    shipped = dense.RECROP_FROM_YAW, dense.RECROP_PASSES
    for p in passes:
        dense.RECROP_FROM_YAW, dense.RECROP_PASSES = 0.0, p
        try:
            face = reconstruct(run, "dense", image, detection, camera)
        finally:
            dense.RECROP_FROM_YAW, dense.RECROP_PASSES = shipped
        if face is None or face.fit.extra.get("method") != "dense":
            return None
        rmse = np.nan if vertices is None else dense_rmse(face.vertices, vertices)
        out[p] = (nme(face.landmarks68()[0], truth68, norm), rmse)
    return abs(method.yaw(base.points, camera)), out


def table(name: str, rows: list[tuple[float, dict]], passes: list[int], column: int, unit: str) -> None:
    print(f"{name}: yaw bin | faces | " + " | ".join(f"{p} more" for p in passes))
    for lo, hi in zip(BINS, BINS[1:]):
        hits = [s for yaw, s in rows if lo <= yaw < hi]
        if hits:
            scale = 100.0 if unit == "%" else 1.0
            print(f"[{lo:g},{hi:g}) | {len(hits)} | " + " | ".join(
                f"{scale * np.mean([s[p][column] for s in hits]):.3f} {unit}" for p in passes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--identities", type=int, default=8)
    parser.add_argument("--passes", default="0,1,2,4", help="numbers of extra passes to compare")
    args = parser.parse_args()
    passes = [int(p) for p in args.passes.split(",")]
    run = Reconstructor()
    real = [r for r in (scores(run, passes, *face) for face in helen_faces(args.every)) if r]
    with tempfile.TemporaryDirectory() as tmp:
        rendered = [r for r in (scores(run, passes, *face) for face in render_faces(run, args.identities, Path(tmp))) if r]
    print(f"shipped: {dense.RECROP_PASSES} more passes from {dense.RECROP_FROM_YAW:g} degrees")
    table("helen_train NME", real, passes, 0, "%")
    table("renders NME", rendered, passes, 0, "%")
    table("renders dense RMSE", rendered, passes, 1, "mm")


if __name__ == "__main__":
    main()
