"""Landmark networks behind ``dense`` on renders of calibration heads (``first=100``, 0-90 degrees
of yaw by 10, pitch -15 / 0 / 15: ``calibrate_auto_method.render_faces``): each network's mean and
largest 68-point NME (by the box), its faces over twice its median, and the fitted head's dense
RMSE, over the faces it reads itself (a Face Mesh fallback is left out). Calibration data only.

    python scripts/compare_rendered_networks.py NET.onnx [NET.onnx ...] [--identities 8]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from calibrate_auto_method import render_faces   # the same calibration faces
from facerecon.evaluation.metrics import nme
from facerecon.evaluation.protocols import dense_rmse, reconstruct
from facerecon.landmarks import LandmarkEstimator
from facerecon.pipeline import Reconstructor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("networks", nargs="+", type=Path)
    parser.add_argument("--identities", type=int, default=8)
    args = parser.parse_args()
    run = Reconstructor()
    method = run.get_method("dense")
    estimators = [LandmarkEstimator(str(n.resolve()), refiner_file=None) for n in args.networks]
    scores = []   # per face, per network: (NME, dense RMSE mm), nan where it fell back
    with tempfile.TemporaryDirectory() as tmp:
        for image, detection, camera, truth, size, vertices in render_faces(run, args.identities, Path(tmp)):
            row = []
            for estimator in estimators:
                method.__dict__["estimator"] = estimator   # the cached property, swapped
                face = reconstruct(run, "dense", image, detection, camera)
                read = face is not None and face.fit.extra.get("method") == "dense"
                row.append((nme(face.landmarks68()[0], truth, size), dense_rmse(face.vertices, vertices))
                           if read else (np.nan, np.nan))
            scores.append(row)
    scores = np.array(scores)
    print("network | faces | mean / largest NME | faces over 2x median | dense RMSE")
    for k, network in enumerate(args.networks):
        errors, rmse = scores[:, k, 0], scores[:, k, 1]
        print(f"{network} | {np.isfinite(errors).sum()} | {100 * np.nanmean(errors):.3f} / "
              f"{100 * np.nanmax(errors):.1f} % | {int(np.nansum(errors > 2 * np.nanmedian(errors)))} | "
              f"{np.nanmean(rmse):.3f} mm")


if __name__ == "__main__":
    main()
