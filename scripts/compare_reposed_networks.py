"""The held-out helen_train faces (every 4th, as the landmark training keeps them out) re-posed by
``training/repose.py`` at fixed yaws, each wearing its own fitted head and skin over its own
background, in the crop the network's last pass would take: each landmark network's mean
468-point error against the exact targets (the surface points' projections), % of the points'
box, by yaw. Real skin at poses the photos do not show, with exact geometry; calibration data only.

    python scripts/compare_reposed_networks.py NET.onnx [NET.onnx ...] [--every 4] [--cache runs/repose]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facerecon.assets import shared_dir
from facerecon.camera import angles_from_rotation
from facerecon.landmarks import INPUT_SIZE, LANDMARK_ROI_SCALE, LandmarkEstimator, Roi, crop_batch
from facerecon.load import load_image
from facerecon.model import load_model
from facerecon.training.data import DataSettings
from facerecon.training.landmark_data import held_out_photos
from facerecon.training.repose import ReposeSettings, fit_photos, reposed_sample

YAWS = (0.0, 30.0, 60.0, 75.0, 90.0)   # the re-posed head's |yaw|, degrees; both signs each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("networks", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path("runs/repose"), help="the fits' cache (as data.repose_cache)")
    args = parser.parse_args()
    folder = shared_dir() / "eval" / "300w-helen-afw" / "helen_train"
    settings = ReposeSettings(every=1)
    held_out = held_out_photos(folder, args.every)
    faces = [f for f in fit_photos([folder], args.cache, settings) if f.photo in held_out]
    model = load_model()
    data = DataSettings(input_size=INPUT_SIZE, yaw=90.0, pitch=30.0, roll=30.0, framing="landmarks")
    estimators = [LandmarkEstimator(str(n.resolve()), refiner_file=None) for n in args.networks]
    whole_crop = Roi(np.full(2, INPUT_SIZE / 2.0), float(INPUT_SIZE), 0.0)
    box_px = INPUT_SIZE / LANDMARK_ROI_SCALE
    errors = np.zeros((len(estimators), len(YAWS), 2 * len(faces)))
    for i, face in enumerate(faces):
        image = load_image(face.photo)
        start = angles_from_rotation(face.rotation)[0]
        for j, yaw in enumerate(YAWS):
            for side, sign in enumerate((1.0, -1.0)):
                sample = reposed_sample(face, image, model, data, settings, np.random.default_rng([i, j, side]),
                                        yaw_change=sign * yaw - start, pitch_change=0.0, new_identity=False,
                                        flip=False, occlude=False, augment_colour=False, jitter=False)
                for k, estimator in enumerate(estimators):
                    points = estimator._run(crop_batch(sample.image, whole_crop, mirror=True), whole_crop)[0][:, :2] + 0.5
                    error = np.linalg.norm(points - sample.target[:, :2], axis=1).mean()
                    errors[k, j, 2 * i + side] = 100.0 * error / box_px
    print(f"{len(faces)} held-out faces, each re-posed at +-yaw; mean 468-point error, % of the points' box:")
    print(f"  {'network':50s} " + " ".join(f"{y:>6.0f}" for y in YAWS) + "   mean")
    for name, row in zip(args.networks, errors.mean(2)):
        print(f"  {str(name):50s} " + " ".join(f"{v:6.3f}" for v in row) + f" {row.mean():6.3f}")


if __name__ == "__main__":
    main()
