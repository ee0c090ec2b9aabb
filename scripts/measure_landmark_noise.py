"""Measure a landmark network's noise by yaw, for the fit's yaw-weighted priors (``fit.LANDMARK_NOISE``).

Renders synthetic ICT heads (identities 1000.., not the evaluation's) at yaw 0, +-30 and +-60,
runs the detector and the fit's landmark estimator (or with ``--dense`` the dense net), and prints
the mean distance of each face's points from where their correspondence surface points project,
as a fraction of the face size (the fit's normaliser), over the inner points (the sliding contour
points are left out for Face Mesh, whose contour follows the silhouette). Run:
``python scripts/measure_landmark_noise.py [--dense]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.evaluation import synthetic  # noqa: E402
from facerecon.evaluation.protocols import base_texture  # noqa: E402
from facerecon.fit import load_correspondence  # noqa: E402
from facerecon.geometry import surface_points  # noqa: E402
from facerecon.landmarks import DENSE_MODEL_FILE, LandmarkEstimator, dense_surface_points  # noqa: E402
from facerecon.pipeline import Reconstructor  # noqa: E402

YAWS = (0.0, 30.0, 60.0)
HEADS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", action="store_true", help="the dense net: all points are fixed surface points")
    args = parser.parse_args()
    corr = load_correspondence()
    vertices, bary = dense_surface_points() if args.dense else (corr.vertices, corr.bary)
    inner = np.ones(len(vertices), bool)
    if not args.dense:
        inner[corr.contour_landmarks] = False
    with Reconstructor(texture_size=256) as run, tempfile.TemporaryDirectory() as tmp:
        estimator = LandmarkEstimator(DENSE_MODEL_FILE, refiner_file=None) if args.dense else LandmarkEstimator()
        heads = synthetic.make_heads(run.model, base_texture(run, 256), HEADS, first=1000)
        noise = []
        for yaw in YAWS:
            errors = []
            for head in heads:
                for sign in ((1.0,) if yaw == 0 else (1.0, -1.0)):
                    s = synthetic.render_sample(run.model, head, sign * yaw, 0.0, 256, Path(tmp))
                    found = run.detect(s.image).faces
                    marks = estimator.estimate(s.image, found[0]) if found else None
                    if marks is None:
                        continue
                    truth = s.camera.project(surface_points(s.vertices @ s.rotation.T + s.translation,
                                                            vertices, bary))
                    span = np.ptp(marks.points[:, :2], axis=0)
                    dist = np.linalg.norm(marks.points[inner, :2] - truth[inner], axis=1)
                    errors.append(dist.mean() / np.sqrt(span[0] * span[1]))
            noise.append(float(np.mean(errors)))
            print(f"yaw {yaw:4.0f}: {len(errors)} faces, mean error {noise[-1]:.4f} of the face size")
    print(f"LANDMARK_NOISE = ({', '.join(f'{v:.4f}' for v in noise)})  # at yaw {YAWS}")


if __name__ == "__main__":
    main()
