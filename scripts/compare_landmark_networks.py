"""The helen_train faces whose hand marks the landmark training held out (every 4th,
``landmark_data.RealMarks.holdout_every``): 68-point interocular NME with the hand-marked box, of
``fit`` (Face Mesh) and of ``dense``'s fit to each given landmark network's points.

    python scripts/compare_landmark_networks.py NET.onnx [NET.onnx ...] [--every 4]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facerecon.detect import box_detection
from facerecon.evaluation.datasets import ibug300w
from facerecon.evaluation.metrics import interocular, nme
from facerecon.evaluation.protocols import default_camera, reconstruct
from facerecon.geometry import surface_points
from facerecon.landmarks import LandmarkEstimator
from facerecon.load import load_image
from facerecon.methods.dense import MIN_PRESENCE
from facerecon.pipeline import Reconstructor, load_landmarks68


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=4)
    args = parser.parse_args()
    run = Reconstructor()
    fitter = run.get_method("dense").fitter
    estimators = [LandmarkEstimator(str(n.resolve()), refiner_file=None) for n in args.networks]
    corners, bary = load_landmarks68()
    rows = []
    for s in ibug300w(subsets=("helen_train",))[::args.every]:
        image = load_image(s.image_path)
        detection, camera, io = box_detection(s.box), default_camera(image), interocular(s.points)
        face = reconstruct(run, "fit", image, detection, camera)
        row = [np.nan if face is None else nme(face.landmarks68()[0], s.points, io)]
        for estimator in estimators:
            found = estimator.estimate(image, detection)
            if found is None or found.presence < MIN_PRESENCE:
                row.append(np.nan)
                continue
            fit = fitter.fit(found.points, camera)
            placed = fit.camera.project(fit.to_camera(surface_points(fit.vertices(run.model), corners, bary)))
            row.append(nme(placed, s.points, io))
        rows.append(row)
    scores = np.array(rows)
    ok = np.isfinite(scores).all(1)
    print(f"{len(scores)} faces, {ok.sum()} scored by every method; 68-point NME, mean / median:")
    for name, column in zip(["fit (Face Mesh)", *map(str, args.networks)], scores[ok].T):
        print(f"  {name}: {100 * column.mean():.3f} / {100 * np.median(column):.3f} %")


if __name__ == "__main__":
    main()
