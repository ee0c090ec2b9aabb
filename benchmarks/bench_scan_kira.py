"""keentools-kira as a head scan: ten photos of a person turning before a still camera. The head,
not the room, is the rigid object, so the head's frame is the scan's world: each photo's camera is
the inverse of its head pose in the joint landmark fit (``multiview.joint_fit_views``, kira's field
of view), and each photo is masked to the fitted head's silhouette (dilated by 15 % of its size, for
the hair) before the scan's dense depth, fusion and head fit (``scan.reconstruct``, subject human).
Prints the scanned identity's distance from the single-photo identities' mean against their own
spread (``identity_protocol.identity_spread``), and the joint landmark fit's, and writes the scan.

Usage:
  python benchmarks/bench_scan_kira.py [-o OUT] [--max-side 480]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from facerecon.camera import Camera
from facerecon.evaluation.datasets import kira_photos
from facerecon.evaluation.identity_protocol import identity_heads_mm, identity_spread
from facerecon.load import load_image
from facerecon.multiview.views import joint_fit_views
from facerecon.pipeline import Reconstructor
from facerecon.render.renderer import render_head
from facerecon.scan import ScanSettings, reconstruct
from facerecon.scan.cameras import CameraSet, ViewCamera, triangulate_matches
from facerecon.scan.depth import DepthSettings
from facerecon.scan.fusion import FusionSettings
from facerecon.scan.human import landmark_views
from facerecon.scan.views import Views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("kira_scan"))
    parser.add_argument("--max-side", type=int, default=480)
    args = parser.parse_args()
    kira = kira_photos()
    with Reconstructor(texture_size=512) as run:
        model, images = run.model, []
        for path in kira.photos:
            image = load_image(path)
            s = args.max_side / max(image.shape[:2])
            images.append(cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)),
                                     interpolation=cv2.INTER_AREA))
        height, width = images[0].shape[:2]
        camera = Camera.for_image(width, height, kira.fov_deg, source="given")
        still = [ViewCamera(camera.matrix, np.eye(3), np.zeros(3), width, height) for _ in images]
        views = [v for v in landmark_views(run, images, [p.name for p in kira.photos], still, run.fitter) if v.usable]
        joint = joint_fit_views(run.fitter, views)
        masked, cameras = [], []
        for view, fit in zip(views, joint.fits):
            head = model.shape(joint.identity, fit.expression)
            silhouette = render_head(model, head, fit.rotation, fit.translation, camera).alpha > 0.5
            k = max(3, int(0.15 * np.sqrt(silhouette.sum())))
            mask = cv2.dilate(silhouette.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
            masked.append(np.where(mask[..., None], view.image, 0).astype(np.uint8))
            cameras.append(ViewCamera(camera.matrix, fit.rotation, fit.translation, width, height))
        scan_views = Views(masked, [v.source for v in views], [1.0] * len(views), "photos")
        points = triangulate_matches(scan_views, cameras)
        settings = ScanSettings(subject="human", max_side=args.max_side, dense_side=args.max_side, texture_size=512,
                                depth=DepthSettings(planes=64), fusion=FusionSettings(resolution=96, max_faces=10000))
        t0 = time.perf_counter()
        result = reconstruct(scan_views, CameraSet(cameras, points, "head poses", list(range(len(views)))),
                             settings, run=run)
        seconds = time.perf_counter() - t0
        result.save(args.out, settings)
        singles = [v.solo.identity for v in views]
        spread, per_photo = identity_spread(identity_heads_mm(model, singles))
        _, with_scan = identity_spread(identity_heads_mm(model, singles + [result.head.reconstruction.identity]))
        _, with_joint = identity_spread(identity_heads_mm(model, singles + [joint.identity]))
        print(json.dumps({
            "photos_used": len(views), "sift_points": len(points), "triangles": len(result.mesh.faces),
            "single_photo_spread_mm": round(spread, 3), "single_photo_mean_distance_mm": round(float(per_photo.mean()), 3),
            "scan_distance_mm": round(float(with_scan[-1]), 3), "joint_landmarks_distance_mm": round(float(with_joint[-1]), 3),
            "metres_per_unit": result.scale.metres_per_unit, "scan_seconds": round(seconds, 1),
            "timings_s": {k: round(v, 1) for k, v in result.timings.items()}, "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
