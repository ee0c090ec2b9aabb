"""What in the dense network's points keeps ``dense``'s fitted identity near the mean head? Renders
of calibration heads (``first=100``, not the evaluation's), 0-80 degrees of yaw by 20, 256 px: the
dense RMSE of ``dense``'s fit (its own settings) to the network's points, to the exact projections
of its 468 surface points, to those plus independent noise, and to those plus the network's own
errors shuffled across the points (the same sizes, no pattern); faces under / over 40 degrees. The
table is in docs/landmarks.md, "Why the identity stays near the mean".

    python scripts/measure_identity_from_points.py [--heads 12] [--network NET.onnx ...]

``--network``: other landmark networks of the dense net's points (training runs' exports), each
scored on the same renders beside the shipped one.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from facerecon.evaluation import synthetic
from facerecon.evaluation.protocols import base_texture, dense_error
from facerecon.geometry import surface_points
from facerecon.landmarks import LandmarkEstimator, dense_surface_points
from facerecon.pipeline import Reconstructor

YAWS = (0.0, 20.0, 40.0, 60.0, 80.0)
NOISE_PX = (0.5, 1.0, 2.0)
TURNED_FROM = 40.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--network", type=Path, action="append", default=[])
    args = parser.parse_args()
    run = Reconstructor()
    method = run.get_method("dense")
    estimators = {"shipped": method.estimator} | {str(p): LandmarkEstimator(str(p.resolve()), refiner_file=None)
                                                  for p in args.network}
    rng = np.random.default_rng(3)
    rmse, point_error = {}, {}

    def score(name: str, turned: bool, marks, points: np.ndarray, camera, truth_vertices) -> None:
        given = np.column_stack([points, np.zeros(len(points))]).astype(np.float32)
        fit = method.fit_landmarks(replace(marks, points=given), camera)
        error = dense_error(fit.vertices(run.model), truth_vertices)
        rmse.setdefault((name, turned), []).append(float(np.sqrt(np.mean(error ** 2))))

    with tempfile.TemporaryDirectory() as tmp:
        for head in synthetic.make_heads(run.model, base_texture(run), args.heads, first=100):
            for yaw in YAWS:
                s = synthetic.render_sample(run.model, head, float(yaw * rng.choice([-1, 1])), 0.0, 256, Path(tmp))
                found = run.detect(s.image).faces
                if not found:
                    continue
                truth = s.camera.project(surface_points(s.vertices, *dense_surface_points()) @ s.rotation.T
                                         + s.translation)
                turned = yaw >= TURNED_FROM
                for label, estimator in estimators.items():
                    method.__dict__["estimator"] = estimator
                    marks = method.place(s.image, found[0], s.camera)
                    if marks is None:
                        continue
                    error = marks.points[:, :2] - truth
                    point_error.setdefault((label, turned), []).append(float(np.median(np.linalg.norm(error, axis=1))))
                    score(f"{label} network's points", turned, marks, marks.points[:, :2], s.camera, s.vertices)
                    if label != "shipped":
                        continue
                    score("exact", turned, marks, truth, s.camera, s.vertices)
                    for sigma in NOISE_PX:
                        score(f"exact + noise {sigma:g} px", turned, marks, truth + rng.normal(0, sigma, truth.shape),
                              s.camera, s.vertices)
                    score("exact + the network's errors shuffled", turned, marks,
                          truth + error[rng.permutation(len(error))], s.camera, s.vertices)
    method.__dict__["estimator"] = estimators["shipped"]
    for label in estimators:
        print(f"{label}: median point error {np.mean(point_error[(label, False)]):.2f} / "
              f"{np.mean(point_error[(label, True)]):.2f} px (under / over {TURNED_FROM:g} degrees)")
    print(f"points given to the fit | under {TURNED_FROM:g} degrees | {TURNED_FROM:g} or more")
    for name in dict.fromkeys(name for name, _ in rmse):
        print(f"{name} | {np.mean(rmse[(name, False)]):.3f} mm ({len(rmse[(name, False)])}) | "
              f"{np.mean(rmse[(name, True)]):.3f} mm ({len(rmse[(name, True)])})")


if __name__ == "__main__":
    main()
