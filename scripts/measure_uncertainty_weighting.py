"""Does weighing the dense network's points by their predicted sigma help the fit? Measured on the
calibration data only: helen_train (every ``--every``-th face, 68-point NME by the interocular
distance) and renders of heads the evaluation does not use (``first=100``; 68-point NME by the box
and the dense RMSE of the fitted head). Each variant weighs point i by ``1 / sigma_i^power``, the
sigma held within ``range`` times the face's median, scaled to mean 1; "none" fits all alike (what
``dense`` does). The table is in docs/landmarks.md.

    python scripts/measure_uncertainty_weighting.py [--every 2] [--identities 8]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from calibrate_auto_method import helen_faces, render_faces   # the same calibration faces
from facerecon.evaluation.metrics import nme
from facerecon.evaluation.protocols import dense_rmse, reconstruct
from facerecon.methods.dense import DenseLandmarkFit
from facerecon.pipeline import Reconstructor

VARIANTS = {"none": None, "1/sigma^2, r=1.5": (1.5, 2.0), "1/sigma^2, r=2": (2.0, 2.0),
            "1/sigma^2, r=3": (3.0, 2.0), "1/sigma^2, r=10": (10.0, 2.0), "1/sigma, r=3": (3.0, 1.0)}


def weights(sigma: np.ndarray, held: float, power: float) -> np.ndarray:
    median = float(np.median(sigma))
    w = 1.0 / np.clip(sigma, median / held, median * held) ** power
    return w / w.mean()


def scores(run, image, detection, camera, truth68, norm, vertices=None) -> dict[str, tuple[float, float]]:
    """Variant -> (68-point NME, dense RMSE mm or nan) for one face (as ``calibrate_auto_method``'s
    generators give it)."""
    out = {}
    plain = DenseLandmarkFit.fit_landmarks
    for name, variant in VARIANTS.items():
        if variant is not None:
            DenseLandmarkFit.fit_landmarks = lambda self, marks, cam, v=variant: self.fitter.fit(
                marks.points, cam, point_weights=weights(marks.sigma, *v))
        try:
            face = reconstruct(run, "dense", image, detection, camera)
        finally:
            DenseLandmarkFit.fit_landmarks = plain
        if face is None:
            out[name] = (np.nan, np.nan)
            continue
        rmse = np.nan if vertices is None else dense_rmse(face.vertices, vertices)
        out[name] = (nme(face.landmarks68()[0], truth68, norm), rmse)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--identities", type=int, default=8)
    args = parser.parse_args()
    run = Reconstructor()
    real = [scores(run, *face) for face in helen_faces(args.every)]
    with tempfile.TemporaryDirectory() as tmp:
        rendered = [scores(run, *face) for face in render_faces(run, args.identities, Path(tmp))]
    real = [r for r in real if all(np.isfinite(v[0]) for v in r.values())]
    rendered = [r for r in rendered if all(np.isfinite(v[0]) for v in r.values())]
    print(f"weights | helen_train NME ({len(real)} faces) | renders NME ({len(rendered)}) | renders dense RMSE")
    for name in VARIANTS:
        print(f"{name} | {100 * np.mean([r[name][0] for r in real]):.3f} % | "
              f"{100 * np.mean([r[name][0] for r in rendered]):.3f} % | {np.mean([r[name][1] for r in rendered]):.3f} mm")


if __name__ == "__main__":
    main()
