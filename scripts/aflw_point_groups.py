"""Where AFLW2000-3D's 68-point error comes from: per point group (jaw, brows, nose, eyes, mouth),
the mean point error and its mean signed offset, for a method and the peer, on the faces of one
yaw range, with the ground-truth box. An analysis of a test set (to see what a gap is made of):
nothing is calibrated on it.

    python scripts/aflw_point_groups.py [--method dense] [--bin "[60,90]"]

Errors and offsets are % of sqrt(w * h) of the ground-truth box. Offsets: x toward the side the
face turns to (faces turned the other way are mirrored), y down.
"""
from __future__ import annotations

import argparse

import numpy as np

from facerecon.assets import shared_dir
from facerecon.detect import box_detection
from facerecon.evaluation.datasets import aflw2000_3d
from facerecon.evaluation.metrics import YAW_BINS, box_size, yaw_bin
from facerecon.evaluation.peer import peer_landmarks68
from facerecon.evaluation.protocols import default_camera, points_3d_pixels, reconstruct
from facerecon.load import load_image
from facerecon.pipeline import Reconstructor

GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
          "mouth": range(48, 68)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="dense")
    parser.add_argument("--bin", default="[60,90]", choices=YAW_BINS, help="the standard yaw bin")
    args = parser.parse_args()
    run = Reconstructor()
    samples = [s for s in aflw2000_3d(shared_dir() / "eval" / "aflw2000-3d") if yaw_bin(s.yaw_deg) == args.bin]
    who = (args.method, "peer")
    errors = {w: {g: [] for g in GROUPS} for w in who}
    offsets = {w: {g: [] for g in GROUPS} for w in who}
    for s in samples:
        image = load_image(s.image_path)
        face = reconstruct(run, args.method, image, box_detection(s.box), default_camera(image))
        if face is None:
            continue
        points = {args.method: points_3d_pixels(face)[:, :2], "peer": peer_landmarks68(image, s.box)[:, :2]}
        turn = 1.0 if s.yaw_deg > 0 else -1.0
        for w in who:
            d = (points[w] - s.points[:, :2]) / box_size(s.points) * 100
            d[:, 0] *= turn
            for g, index in GROUPS.items():
                errors[w][g].append(np.linalg.norm(d[list(index)], axis=1).mean())
                offsets[w][g].append(d[list(index)].mean(0))
    n = len(errors[args.method]["jaw"])
    print(f"{n} of {len(samples)} faces in yaw bin {args.bin} (GT box); error % / offset x, y %")
    print(f"{'group':6} {'points':>6} " + " ".join(f"{w:>26}" for w in who) + "   share of the gap")
    share = {g: (np.mean(errors[who[0]][g]) - np.mean(errors[who[1]][g])) * len(GROUPS[g]) / 68 for g in GROUPS}
    for g in GROUPS:
        cells = [f"{np.mean(errors[w][g]):6.2f} / {np.mean(offsets[w][g], 0)[0]:+6.2f}, {np.mean(offsets[w][g], 0)[1]:+6.2f}"
                 for w in who]
        print(f"{g:6} {len(GROUPS[g]):6d} " + " ".join(f"{c:>26}" for c in cells) + f"   {share[g]:+.2f} points")
    totals = [sum(np.mean(errors[w][g]) * len(GROUPS[g]) for g in GROUPS) / 68 for w in who]
    print(f"{'all':6} {68:6d} " + " ".join(f"{t:26.2f}" for t in totals) + f"   {sum(share.values()):+.2f} points")


if __name__ == "__main__":
    main()
