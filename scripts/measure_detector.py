"""Measure the face detector: calibration sets and the reported test sets, by score threshold.

Run: ``python scripts/measure_detector.py [--calibrate]``. A face counts as found when a kept box
contains the centre of its ground-truth points' box; a kept box containing no annotated face's
centre is a false hit.

- helen_train (870 crops, one annotated face each; calibration): the 68-point box against YuNet's
  box, the found rate, and the scores of the
  boxes that contain no annotated face (other people in a crop, or false hits).
- synthetic ICT renders (calibration), 8 identities x yaw -80..80 x pitch -15/0/15 at 256 px:
  found rate by |yaw| (the box contains the projected face centre), the profile end of the range.
- profile renders (calibration): 600 training-style renders (``training.data.SyntheticFaces``: real
  skin atlases, cluttered backgrounds, occluders, colour changes) at |yaw| 60..90, pitch and roll
  -30..30, for the mirror confirmation of unsure boxes (``detect.CONFIRM_SCORE``).
- the unlabelled photos (``<shared>/eval/photos``, ``multiview``; calibration): boxes per photo.
- AFLW2000-3D, all 2000 photos (test): found per yaw bin.
- dlib's 43 hand-marked faces in group photos (test): found and false hits.

With ``--calibrate`` it sweeps ``THRESHOLDS`` on the calibration sets only (the detector runs once
with a low floor; greedy NMS then thresholding equals thresholding then NMS), and the rules for
boxes under ``detect.MIN_SCORE``: a plain lower threshold against the mirror confirmation (keep a box
from ``detect.UNSURE_SCORE`` when it or its mirror-image box reaches ``CONFIRM_SCORES``), each as
profile renders found against boxes on no annotated helen_train face and on the unlabelled photos;
then, for the boxes the shipped rule keeps under ``MIN_SCORE``, Face Mesh's presence probability
(``landmarks.UNSURE_MIN_PRESENCE``).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.assets import shared_dir  # noqa: E402
from facerecon.evaluation.datasets import aflw2000_3d, ibug300w, photos68  # noqa: E402
from facerecon.evaluation.metrics import YAW_BINS, yaw_bin  # noqa: E402
from facerecon.load import PHOTO_SUFFIXES, load_image  # noqa: E402
from facerecon.model import FACE_AREA  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOW_THRESHOLDS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
CONFIRM_SCORES = (0.3, 0.35, 0.4, 0.45, 0.5)
PRESENCES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def match(detections, truth_boxes: list[np.ndarray]) -> tuple[list[float | None], list[float]]:
    """Per truth face the best score of a box containing its centre (None: missed), and the scores
    of the boxes containing no truth centre (false hits)."""
    centres = [0.5 * (b[:2] + b[2:]) for b in truth_boxes]
    found = [max((d.score for d in detections if _contains(d.box, c)), default=None) for c in centres]
    false = [d.score for d in detections if not any(_contains(d.box, c) for c in centres)]
    return found, false


def _by_image(samples) -> dict[Path, list[np.ndarray]]:
    groups: dict[Path, list[np.ndarray]] = defaultdict(list)
    for s in samples:
        groups[s.image_path].append(s.box)
    return groups


def run_set(detector, samples) -> tuple[list[float | None], list[float], list]:
    found, false, rows = [], [], []
    for path, boxes in _by_image(samples).items():
        f, x = match(detector.detect(load_image(path)), boxes)
        found += f
        false += x
        rows.append((path, f, x))
    return found, false, rows


def _rate(found: list[float | None], threshold: float) -> tuple[int, int]:
    return sum(s is not None and s >= threshold for s in found), len(found)


def synthetic_found(detector, n_identities: int = 8) -> dict[float, list[float | None]]:
    """|yaw| -> per render the best score of a box containing the projected face centre."""
    import tempfile

    from facerecon.evaluation import synthetic
    from facerecon.evaluation.protocols import base_texture
    from facerecon.pipeline import Reconstructor

    with Reconstructor() as run:
        heads = synthetic.make_heads(run.model, base_texture(run), n_identities)
    found: dict[float, list[float | None]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for head in heads:
            for pitch in synthetic.PITCHES:
                for yaw in synthetic.YAWS:
                    s = synthetic.render_sample(run.model, head, yaw, pitch, 256, Path(tmp))
                    centre = (s.vertices[FACE_AREA] @ s.rotation.T + s.translation).mean(0)
                    pixel = s.camera.project(centre[None])[0]
                    found[abs(yaw)] += match(detector.detect(s.image), [np.r_[pixel, pixel]])[0]
    return found


def profile_renders(count: int = 600, seed: int = 11, pose_seed: int = 2):
    """Training-style renders at |yaw| 60..90: (image, projected face centre) pairs."""
    from facerecon.posmap import detector_like_box
    from facerecon.training.data import DataSettings, SyntheticFaces, bake_real_textures, texture_library

    bases = bake_real_textures(256, (shared_dir() / "eval" / "photos",))
    faces = SyntheticFaces(texture_library(bases, 24, 0), DataSettings(input_size=256, rotate=0.0, scale=(0.9, 1.6)), seed)
    rng = np.random.default_rng(pose_seed)
    for i in range(count):
        yaw = float(rng.uniform(60, 90)) * rng.choice([-1, 1])
        s = faces.sample(i, flip=False, pose=(yaw, float(rng.uniform(-30, 30)), float(rng.uniform(-30, 30))))
        box = detector_like_box(s.vertices @ s.rotation.T + s.translation, s.camera, faces.model)
        yield s.image, 0.5 * (box[:2] + box[2:])


def mirror_scores(raw, image: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    """(box, score, score of the overlapping box on the mirror image) for the boxes of a detector
    with a low floor and no mirror confirmation of its own."""
    from facerecon.detect import MIRROR_IOU, box_iou
    w = image.shape[1]
    mirror = [(np.array([w - 1 - d.box[2], d.box[1], w - 1 - d.box[0], d.box[3]]), d.score)
              for d in raw.detect(np.ascontiguousarray(image[:, ::-1]))]
    return [(d.box, d.score, max((m for b, m in mirror if box_iou(d.box, b) > MIRROR_IOU), default=0.0))
            for d in raw.detect(image)]


def calibrate_unsure(helen, photos: list[Path]) -> None:
    """The rules for boxes under MIN_SCORE, then the shipped rule's unsure boxes through Face Mesh."""
    from facerecon.detect import MIN_SCORE, UNSURE_SCORE, FaceDetector
    from facerecon.landmarks import LandmarkEstimator
    renders = list(profile_renders())
    with FaceDetector(min_score=UNSURE_SCORE, confirm_score=1.0) as raw:
        def pairs(image, centre):   # per box: (score, mirror score, contains the centre)
            return [(sc, ms, centre is not None and _contains(b, centre)) for b, sc, ms in mirror_scores(raw, image)]
        render_rows = [pairs(image, c) for image, c in renders]
        helen_rows = [pairs(load_image(f.image_path), 0.5 * (f.box[:2] + f.box[2:])) for f in helen]
        photo_rows = [pairs(load_image(p), None) for p in photos]
    rules = {f"score >= {t}": (lambda sc, ms, t=t: sc >= t) for t in LOW_THRESHOLDS}
    rules.update({f"mirror confirms at {c}": (lambda sc, ms, c=c: sc >= MIN_SCORE or max(sc, ms) >= c)
                  for c in CONFIRM_SCORES})
    print(f"rules for boxes from {UNSURE_SCORE}: profile renders found (of {len(renders)}), "
          "helen_train boxes on no annotated face, unlabelled photo boxes")
    for name, keep in rules.items():
        found = sum(any(keep(sc, ms) for sc, ms, inside in rows if inside) for rows in render_rows)
        helen_false = sum(keep(sc, ms) for rows in helen_rows for sc, ms, inside in rows if not inside)
        photo_boxes = sum(keep(sc, ms) for rows in photo_rows for sc, ms, _ in rows)
        print(f"  {name:24s} {found:4d}  {helen_false:4d}  {photo_boxes:3d}")
    with FaceDetector() as shipped, LandmarkEstimator() as estimator:
        def presences(image, centre):   # the shipped detector's unsure boxes: (presence, on the face)
            out = []
            for d in shipped.detect(image):
                if d.score < MIN_SCORE:
                    marks = estimator.estimate(image, d)
                    out.append((0.0 if marks is None else marks.presence, centre is not None and _contains(d.box, centre)))
            return out
        render_p = [presences(image, c) for image, c in renders]
        helen_p = [presences(load_image(f.image_path), 0.5 * (f.box[:2] + f.box[2:])) for f in helen]
        photo_p = [presences(load_image(p), None) for p in photos]
    print("unsure boxes the shipped detector keeps, by Face Mesh presence: profile renders found "
          "only through an unsure box, helen_train unsure boxes on no annotated face, photo unsure boxes")
    for t in PRESENCES:
        found = sum(any(p >= t for p, inside in rows if inside) for rows in render_p)
        print(f"  presence >= {t:.2f}  {found:4d}  {sum(p >= t for rows in helen_p for p, inside in rows if not inside):4d}"
              f"  {sum(p >= t for rows in photo_p for p, _ in rows):3d}")


def box_map(faces) -> np.ndarray:
    """Medians over faces of the 68-point box relative to YuNet's own box: width and height ratios,
    centre offset (x, y) in YuNet box sides (for reference: ``detect.BOX_FROM_YUNET`` maps onto
    MediaPipe's boxes, about 1.07 x the 68-point box's width and 1.09 x its height)."""
    import facerecon.detect as detect
    saved, detect.BOX_FROM_YUNET = detect.BOX_FROM_YUNET, (1.0, 1.0, 0.0)   # YuNet's raw boxes
    try:
        with detect.FaceDetector(confirm_score=1.0) as raw:
            rows = []
            for s in faces:
                centre = 0.5 * (s.box[:2] + s.box[2:])
                hits = [d.box.astype(np.float64) for d in raw.detect(load_image(s.image_path)) if _contains(d.box, centre)]
                if hits:
                    size = hits[0][2:] - hits[0][:2]
                    rows.append([*((s.box[2:] - s.box[:2]) / size), *((centre - 0.5 * (hits[0][:2] + hits[0][2:])) / size)])
    finally:
        detect.BOX_FROM_YUNET = saved
    return np.median(rows, axis=0)


def calibrate(detector) -> None:
    helen = ibug300w(subsets=("helen_train",))
    print("helen_train: 68-point box / YuNet box: width, height, centre offset x, y (medians):",
          np.round(box_map(helen), 3))
    synthetic_scores = synthetic_found(detector)
    print("synthetic renders: threshold, found per |yaw|")
    for t in THRESHOLDS:
        print(f"  {t:.2f}  " + ", ".join(f"{y:.0f}: {_rate(f, t)[0]}/{len(f)}" for y, f in sorted(synthetic_scores.items())))
    found, false, rows = run_set(detector, helen)
    print("helen_train (870 faces): threshold, found, boxes without an annotated face")
    for t in THRESHOLDS:
        n, total = _rate(found, t)
        print(f"  {t:.2f}  {n}/{total}  {sum(s >= t for s in false)}")
    print("  faces missed at the lowest floor:", [r[0].name for r in rows if None in r[1]])
    print("  top unannotated boxes:", sorted(((round(s, 2), r[0].name) for r in rows for s in r[2]), reverse=True)[:12])
    photos = sorted(p for folder in ("photos", "multiview") for p in (shared_dir() / "eval" / folder).rglob("*")
                    if p.suffix.lower() in PHOTO_SUFFIXES)
    print(f"unlabelled photos ({len(photos)}): photo, box scores (check the low ones by eye)")
    for p in photos:
        print(f"  {p.parent.name}/{p.name}: {[round(d.score, 2) for d in detector.detect(load_image(p))]}")
    calibrate_unsure(helen, [p for p in photos if shared_dir() / "eval" / "photos" in p.parents])


def report(detector, threshold: float = 0.0) -> None:
    """The test sets at one threshold (0: the detector's own)."""
    samples = aflw2000_3d(shared_dir() / "eval" / "aflw2000-3d")
    found, _, _ = run_set(detector, samples)
    bins = [yaw_bin(s.yaw_deg) for s in samples]
    cells = [f"{b} {_rate([f for f, g in zip(found, bins) if g == b], threshold)}" for b in YAW_BINS]
    print(f"AFLW2000-3D found (of 2000): {sum(s is not None and s >= threshold for s in found)}; " + ", ".join(cells))
    dlib = [s for s in photos68() if s.group == "dlib"]
    found, false, _ = run_set(detector, dlib)
    n, total = _rate(found, threshold)
    print(f"dlib faces: found {n}/{total}, false hits {sum(s >= threshold for s in false)}")


def main() -> None:
    from facerecon.detect import FaceDetector
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="sweep thresholds on the calibration sets")
    args = parser.parse_args()
    if args.calibrate:
        with FaceDetector(min_score=min(THRESHOLDS), confirm_score=1.0) as detector:
            calibrate(detector)
    else:
        with FaceDetector() as detector:
            report(detector)


if __name__ == "__main__":
    main()
