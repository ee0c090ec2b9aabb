"""How MediaPipe's face box relates to the box training uses (``posmap.detector_like_box``).

Renders random ICT heads (yaw -90..90, pitch and roll -25..25) as the evaluation's synthetic set does,
runs our detector, and prints the detector box's centre offset and side relative to the
projected-68-landmark box (median and spread, by yaw). The regressor trains on the landmark box
with the seeds' translation and scale jitter, which covers the spread printed here.

Usage: python scripts/measure_regress_boxes.py [--samples 90]
"""
from __future__ import annotations

import argparse

import numpy as np

from facerecon.camera import Camera, rotation_from_angles
from facerecon.detect import FaceDetector
from facerecon.model import load_model
from facerecon.render.lighting import random_lighting
from facerecon.render.renderer import render_head
from facerecon.posmap import detector_like_box
from facerecon.training.data import bake_real_textures, random_background, skin_texture


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=90)
    args = parser.parse_args()
    model, base = load_model(), bake_real_textures(256)[0]
    rng = np.random.default_rng(5)
    camera = Camera.for_image(256, 256)
    rows = []
    with FaceDetector() as detector:
        for _ in range(args.samples):
            vertices = model.shape(np.clip(rng.normal(0, 1, 100), -2.5, 2.5).astype(np.float32))
            yaw = rng.uniform(-90, 90)
            rotation = rotation_from_angles(yaw, rng.uniform(-25, 25), rng.uniform(-25, 25))
            translation = np.r_[rng.uniform(-3, 3, 2), rng.uniform(40, 70)] - rotation @ vertices[:9409].mean(0)
            result = render_head(model, vertices, rotation, translation, camera, skin_texture(base, rng),
                                 random_lighting(rng), background=random_background(256, rng), supersample=2)
            image = (result.image * 255 + 0.5).astype(np.uint8)
            box = detector_like_box((vertices @ rotation.T + translation).astype(np.float32), camera, model)
            side = max(box[2:] - box[:2])
            found = detector.run(image).faces
            if not found:
                rows.append((yaw, np.nan, np.nan, np.nan))
                continue
            det = found[0].box
            offset = ((det[:2] + det[2:]) - (box[:2] + box[2:])) / 2 / side
            rows.append((yaw, *offset, max(det[2:] - det[:2]) / side))
    r = np.array(rows)
    ok = np.isfinite(r[:, 1])
    print(f"detected {ok.mean():.0%} of {len(r)}")
    for lo, hi in ((-90, -60), (-60, -30), (-30, 30), (30, 60), (60, 90)):
        sel = ok & (r[:, 0] >= lo) & (r[:, 0] < hi)
        if sel.any():
            med, std = np.median(r[sel, 1:], 0), r[sel, 1:].std(0)
            print(f"yaw {lo:+d}..{hi:+d}: n={sel.sum():2d}  centre dx {med[0]:+.3f} dy {med[1]:+.3f}  side ratio "
                  f"{med[2]:.3f}  (std {std[0]:.3f} {std[1]:.3f} {std[2]:.3f})")
    med, std = np.median(r[ok, 1:], 0), r[ok, 1:].std(0)
    print(f"all: centre dx {med[0]:+.3f} dy {med[1]:+.3f} side ratio {med[2]:.3f} (std {std[0]:.3f} {std[1]:.3f} {std[2]:.3f})")


if __name__ == "__main__":
    main()
