"""Measure where the estimator's first crop (``detection_roi`` of our detector's box, 1.5x) lies
relative to the crop its final pass takes (``landmark_roi`` of the surface points), on renders of
prior heads the evaluation never uses (``first=300``), yaw -90..90, pitch -25..25. Writes the
table that training draws detection-framed crops from (``data.DETECTION_FRAMING_FILE``): per found
face its yaw and the first crop's centre offset (along the final crop's axes, in its sides), log
side ratio and angle difference. Also prints the same offsets on helen_train (real photos, the
final points as the estimate gives them) beside the renders', by yaw bin, as a check that the
renders' boxes are the real ones'. Calibration data only.

    python scripts/measure_detection_framing.py [--identities 40] [--views 12]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from facerecon.evaluation import synthetic
from facerecon.evaluation.datasets import ibug300w
from facerecon.evaluation.protocols import base_texture
from facerecon.fit import load_correspondence
from facerecon.geometry import surface_points
from facerecon.landmarks import DETECTION_ROI_SCALES, detection_roi, landmark_roi
from facerecon.load import load_image
from facerecon.pipeline import Reconstructor
from facerecon.training.data import DETECTION_FRAMING_FILE, roi_offset

BINS = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 91.0)


def rendered_rows(run: Reconstructor, identities: int, views: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    corr = load_correspondence()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for head in synthetic.make_heads(run.model, base_texture(run), identities, first=300):
            for _ in range(views):
                yaw, pitch = float(rng.uniform(-90, 90)), float(rng.uniform(-25, 25))
                s = synthetic.render_sample(run.model, head, yaw, pitch, 512, Path(tmp))
                cam = s.vertices @ s.rotation.T + s.translation
                final = landmark_roi(s.camera.project(surface_points(cam, corr.vertices, corr.bary)))
                found = run.detect(s.image).faces
                if found:
                    rows.append((yaw, *roi_offset(final, detection_roi(found[0], DETECTION_ROI_SCALES[0]))))
    return np.array(rows, np.float32)


def real_rows(run: Reconstructor, every: int) -> np.ndarray:
    """Every ``every``-th helen_train face our detector finds and dense reads: (its fitted yaw,
    offsets against the final crop of its points)."""
    rows = []
    for sample in ibug300w(subsets=("helen_train",))[::every]:
        image = load_image(sample.image_path)
        found = run.detect(image).faces
        if not found:
            continue
        face = run.reconstruct_face(image, found[0], run.camera_for(image), with_texture=False, method="dense")
        if face is None or face.fit.extra.get("method") != "dense":
            continue
        rows.append((face.fit.angles[0], *roi_offset(landmark_roi(face.landmarks.points),
                                                      detection_roi(found[0], DETECTION_ROI_SCALES[0]))))
    return np.array(rows, np.float32)


def summary(rows: np.ndarray) -> list[str]:
    """Per |yaw| bin: faces, median offset along / across the face's turn, side ratio, angle."""
    out = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        hit = rows[(np.abs(rows[:, 0]) >= lo) & (np.abs(rows[:, 0]) < hi)]
        if len(hit):
            along = hit[:, 1] * np.sign(hit[:, 0] + 1e-9)   # toward the side the face turns to
            out.append(f"{lo:.0f}-{hi:.0f} | {len(hit)} | {np.median(along):+.3f} | {np.median(hit[:, 2]):+.3f} | "
                       f"{np.exp(np.median(hit[:, 3])):.3f} | {np.degrees(np.median(np.abs(hit[:, 4]))):.1f}")
        else:
            out.append(f"{lo:.0f}-{hi:.0f} | 0 | | | |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--no-real", action="store_true", help="skip the helen_train check")
    args = parser.parse_args()
    run = Reconstructor()
    rendered = rendered_rows(run, args.identities, args.views)
    np.savez_compressed(DETECTION_FRAMING_FILE, rows=rendered)
    print(f"{len(rendered)} rendered faces found of {args.identities * args.views}; wrote {DETECTION_FRAMING_FILE}")
    print("renders: |yaw| | faces | centre along the turn | centre down | side ratio | |angle| (deg), medians")
    print("\n".join(summary(rendered)))
    if not args.no_real:
        print("helen_train, every 4th face (the final points of dense's network):")
        print("\n".join(summary(real_rows(run, 4))))


if __name__ == "__main__":
    main()
