"""The ``multiview`` protocol: one head from several views against one view, in one table.

- Synthetic ICT heads (the synthetic protocol's renderer and identities): dense RMSE on the face area
  from the front view alone, a side view alone, front + side (yaw 30 and 60) and front + both sides
  (yaw +-60), each through :func:`facerecon.multiview.reconstruct_same_person` (view checks included).
- The james scan from its two real photos together against each alone (RMSE after ICP, as the
  scan protocol measures it), with the default camera and again at the photos' true field of view
  (calibrated from the scan's texture mapping); the mean head and the model floor for scale.
- The three mvfnet photos: the head, one overlay per view and a turntable in ``<report>/multiview/``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..assets import TWOVIEW_MODEL, shared_dir
from ..geometry import vertex_normals
from ..model import FACE_AREA, face_area_triangles
from ..multiview import MultiViewReconstruction, expand_photos, joint_fit_views, reconstruct_same_person
from ..camera import Camera
from . import synthetic
from .datasets import Scan, james_scan
from .metrics import finite_mean
from .protocols import Context, ProtocolResult, base_texture, dense_error
from .scan_protocol import place_on_scan, scan_crop

# name -> yaws of the views given together (the first is the reference whose expression is compared)
SYNTHETIC_SETS = {"1 view (front)": (0.0,), "1 view (side 60)": (60.0,), "2 views (front + 30)": (0.0, 30.0),
                  "2 views (front + 60)": (0.0, 60.0), "3 views (front + -60)": (0.0, 60.0, -60.0)}


def _rmse(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err ** 2)))


def refined(run, result: MultiViewReconstruction) -> np.ndarray:
    """The head of a one-view result fitted by the joint solver (more iterations than the pipeline's
    single-view fit): the like-for-like single-view baseline for the joint fit."""
    joint = joint_fit_views(run.fitter, result.used)
    return run.model.shape(joint.identity, joint.fits[0].expression)


def scan_rmse(vertices: np.ndarray, scan: Scan, crop: np.ndarray, face_tris: np.ndarray) -> float:
    """The scan protocol's 'similarity' RMSE (mm) after :func:`place_on_scan`."""
    placed = place_on_scan(vertices, scan, crop, face_tris)
    return _rmse(cKDTree(placed.surface).query(placed.crop)[0])


def model_floor(model, scan: Scan, crop: np.ndarray, face_tris: np.ndarray, modes: int = 40,
                iterations: int = 10, ridge_mm2: float = 10.0) -> tuple[float, np.ndarray]:
    """The best the model can do for this scan: the identity (leading ``modes``, neutral
    expression) fitted to the scan crop itself, by alternating the protocol's alignment with a
    point-to-plane least-squares step on the identity (ridge ``ridge_mm2`` per coefficient).
    Returns its :func:`scan_rmse` and the identity (n_identity,). Not a reconstruction: it sees the truth."""
    basis = model.identity_basis[:modes, FACE_AREA].astype(np.float64) * 10.0          # (S, F, 3) mm
    identity = np.zeros(model.n_identity)
    for _ in range(iterations):
        placed = place_on_scan(model.shape(identity.astype(np.float32)), scan, crop, face_tris)
        face = placed.head[FACE_AREA]
        dist, nearest = cKDTree(face).query(placed.crop)
        keep = dist < np.quantile(dist, 0.95)
        target, idx = placed.crop[keep], nearest[keep]
        normals = vertex_normals(placed.head, model.triangles)[FACE_AREA][idx]
        place = placed.placement
        moved = place.scale * np.einsum("ab,sfb->sfa", place.rotation, basis[:, idx])   # (S, k, 3)
        a = np.einsum("sfa,fa->fs", moved, normals)
        r = np.einsum("fa,fa->f", face[idx] - target, normals)
        step = np.linalg.solve(a.T @ a + ridge_mm2 * np.eye(modes), -(a.T @ r) - ridge_mm2 * identity[:modes])
        identity[:modes] += step
    identity = identity.astype(np.float32)
    return scan_rmse(model.shape(identity), scan, crop, face_tris), identity


# the networks' rows (with --methods ...,regress): name -> (first view yaw, second view yaw or "synthetic")
NETWORK_SETS = {"1 view (front), regress": (0.0, None), "2 views (front + 30), two-view network": (0.0, 30.0),
                "2 views (front + 60), two-view network": (0.0, 60.0),
                "1 view (front) + synthetic view, two-view network": (0.0, "synthetic")}


class Networks:
    """The single-view and two-view regressors on views given as photos (the protocol's inputs)."""

    def __init__(self, run):
        from ..twoview import TwoViewRegressor
        self.run, self.twoview = run, TwoViewRegressor(run.model)

    def face(self, image: np.ndarray):
        """(detection, camera) of the photo's best face, or None."""
        found = self.run.detector.run(image, 1).faces
        return (found[0], Camera.for_image(image.shape[1], image.shape[0])) if found else None

    def vertices(self, first: np.ndarray, second) -> np.ndarray | None:
        """Model-frame head from the first photo and ``second`` (None: the single-view regressor;
        "synthetic": the rotate-and-render view of the first photo's fit; else a photo)."""
        from ..twoview import synthetic_second_view
        run, face = self.run, self.face(first)
        if face is None:
            return None
        det, camera = face
        if second is None:
            fit = run.get_method("regress").regressor.fit(first, det, camera)[0]
        elif isinstance(second, str):
            made = run.reconstruct_face(first, det, camera, method="fit")
            if made is None:
                return None
            fit = self.twoview.fit(first, det, camera, *synthetic_second_view(run.model, made.fit, made.texture))
        else:
            other = self.face(second)
            if other is None:
                return None
            fit = self.twoview.fit(first, det, camera, second, other[0])
        return run.model.shape(fit.identity, fit.expression)


def multiview_protocol(ctx: Context) -> ProtocolResult:
    run, out = ctx.run, ctx.out_dir / "multiview"
    n_identities, size = (2, 256) if ctx.smoke else (12, 512)
    rows = []
    networks = Networks(run) if "regress" in ctx.methods and TWOVIEW_MODEL.exists() else None
    # --- synthetic
    heads = synthetic.make_heads(run.model, base_texture(run), n_identities)
    for head in heads:
        renders = {yaw: synthetic.render_sample(run.model, head, yaw, 0.0, size, out / "synthetic")
                   for yaw in sorted({y for ys in SYNTHETIC_SETS.values() for y in ys})}
        truth = renders[0.0].vertices
        for name, yaws in SYNTHETIC_SETS.items():
            row = {"part": "synthetic", "identity": head.index, "set": name, "size": size}
            try:
                result = reconstruct_same_person(run, [renders[y].image for y in yaws],
                                                 [renders[y].image_path.name for y in yaws], with_texture=False)
            except Exception as exc:   # no face at all: counted, not fatal
                rows.append({**row, "rmse_mm": np.nan, "used": 0, "error": type(exc).__name__})
                continue
            # Compare the head as the first view's expression shows it (all views share the truth's).
            first = result.views[0]
            vertices = (run.model.shape(result.identity, first.fit.expression) if first.fit is not None
                        else result.vertices)
            rows.append({**row, "rmse_mm": _rmse(dense_error(vertices, truth)), "used": len(result.used),
                         "rejected": [v.source for v in result.views if v.status != "used"]})
            if len(yaws) == 1 and result.used:
                rows[-1]["rmse_mm_joint_solver"] = _rmse(dense_error(refined(run, result), truth))
                # the prior's mean identity with the fitted expression: what the landmarks add to it
                mean_face = run.model.shape(np.zeros_like(result.identity), first.fit.expression)
                rows[-1]["rmse_mm_mean_identity"] = _rmse(dense_error(mean_face, truth))
        if networks is not None:
            for name, (first, second) in NETWORK_SETS.items():
                row = {"part": "synthetic", "identity": head.index, "set": name, "size": size}
                verts = networks.vertices(renders[first].image, renders[second].image if isinstance(second, float)
                                          else second)
                rows.append({**row, "rmse_mm": np.nan if verts is None else _rmse(dense_error(verts, truth)),
                             "used": 0 if verts is None else (1 if second is None else 2)})
    # --- the james scan: each photo alone, and both
    scan = james_scan()
    crop = scan_crop(scan)
    tris = run.model.triangles
    face_tris = face_area_triangles(tris)
    # The photos' own field of view (calibrated from the texture mapping, ~14 degrees: a portrait
    # lens) against the default the pipeline assumes for a photo without EXIF.
    true_fov = float(np.mean([scan.photo_fov_deg(k) for k in (0, 1)]))
    for suffix, fov in (("", None), (f", true focal ({true_fov:.1f} deg)", true_fov)):
        assumed, run.fov_deg = run.fov_deg, fov
        try:
            for name, photos in (("photo 0", [0]), ("photo 1", [1]), ("photos 0 + 1", [0, 1])):
                result = reconstruct_same_person(run, [scan.photos[k] for k in photos],
                                                 [f"james{k}" for k in photos], with_texture=False)
                rows.append({"part": "scan", "set": name + suffix,
                             "rmse_mm": scan_rmse(result.vertices, scan, crop, face_tris),
                             "used": len(result.used), "yaw": [round(v.fit.angles[0], 1) for v in result.used],
                             "fov_deg": round(result.used[0].camera.fov_deg, 2), "warnings": result.warnings})
                if len(photos) == 1:
                    rows[-1]["rmse_mm_joint_solver"] = scan_rmse(refined(run, result), scan, crop, face_tris)
        finally:
            run.fov_deg = assumed
    # the floor that any shape recovery has to beat: the mean ICT head, no photo at all
    rows.append({"part": "scan", "set": "mean head", "rmse_mm": scan_rmse(run.model.neutral, scan, crop, face_tris)})
    # the ceiling: how close the model's identity space gets to this face at all
    rows.append({"part": "scan", "set": "model floor", "rmse_mm": model_floor(run.model, scan, crop, face_tris)[0]})
    if networks is not None:
        # the more frontal photo first (the two-view network was trained front first)
        order = sorted((0, 1), key=lambda k: abs(next(r for r in rows if r.get("set") == f"photo {k}")["yaw"][0]))
        photo_a, photo_b = (scan.photos[k] for k in order)
        for name, first, second in ((f"photo {order[0]}, regress", photo_a, None),
                                    (f"photo {order[1]}, regress", photo_b, None),
                                    ("photos 0 + 1, two-view network", photo_a, photo_b),
                                    (f"photo {order[0]} + synthetic view, two-view network", photo_a, "synthetic"),
                                    (f"photo {order[1]} + synthetic view, two-view network", photo_b, "synthetic")):
            verts = networks.vertices(first, second)
            rows.append({"part": "scan", "set": name,
                         "rmse_mm": np.nan if verts is None else scan_rmse(verts, scan, crop, face_tris)})
    # --- mvfnet: the pictures
    photos = expand_photos([shared_dir() / "eval" / "multiview" / "mvfnet"])
    result = reconstruct_same_person(run, photos)
    result.save(out / "mvfnet", formats=("obj", "glb"), turntable=not ctx.smoke)
    rows.append({"part": "mvfnet", "set": "3 photos", "used": len(result.used),
                 "yaw": [round(v.fit.angles[0], 1) for v in result.used], "warnings": result.warnings,
                 "texture_coverage": result.texture_coverage})

    summary = {}
    for name in SYNTHETIC_SETS:
        ok = [r for r in rows if r["part"] == "synthetic" and r["set"] == name]
        summary[f"synthetic rmse_mm {name}"] = finite_mean([r["rmse_mm"] for r in ok])
        summary[f"synthetic views used {name}"] = finite_mean([r["used"] for r in ok])
        if len(SYNTHETIC_SETS[name]) == 1:
            summary[f"synthetic rmse_mm {name}, joint solver"] = finite_mean([r.get("rmse_mm_joint_solver", np.nan) for r in ok])
            summary[f"synthetic rmse_mm {name}, mean identity"] = finite_mean([r.get("rmse_mm_mean_identity", np.nan) for r in ok])
    for name in NETWORK_SETS if networks is not None else ():
        summary[f"synthetic rmse_mm {name}"] = finite_mean([r["rmse_mm"] for r in rows
                                                      if r["part"] == "synthetic" and r["set"] == name])
    scan_rows = {r["set"]: r for r in rows if r["part"] == "scan"}
    for name, r in scan_rows.items():
        summary[f"scan rmse_mm {name}"] = r["rmse_mm"]
        if "rmse_mm_joint_solver" in r:
            summary[f"scan rmse_mm {name}, joint solver"] = r["rmse_mm_joint_solver"]
    both = summary["scan rmse_mm photos 0 + 1"]
    better = min(summary["scan rmse_mm photo 0"], summary["scan rmse_mm photo 1"])
    summary["scan reduction vs better photo %"] = 100.0 * (1.0 - both / better)
    true = f", true focal ({true_fov:.1f} deg)"
    summary[f"scan reduction vs better photo{true} %"] = 100.0 * (1.0 - summary[f"scan rmse_mm photos 0 + 1{true}"] / min(
        summary[f"scan rmse_mm photo 0{true}"], summary[f"scan rmse_mm photo 1{true}"]))
    better = min(summary["scan rmse_mm photo 0, joint solver"], summary["scan rmse_mm photo 1, joint solver"])
    summary["scan reduction vs better photo (joint solver) %"] = 100.0 * (1.0 - both / better)
    front = summary["synthetic rmse_mm 1 view (front)"]
    for name in list(SYNTHETIC_SETS)[2:]:
        summary[f"synthetic reduction {name} vs front %"] = 100.0 * (1.0 - summary[f"synthetic rmse_mm {name}"] / front)
    summary["mvfnet texture coverage %"] = 100.0 * result.texture_coverage
    notes = [f"Synthetic: {n_identities} ICT-prior identities (the synthetic protocol's), each rendered at yaw 0, 30, "
             f"+60 and -60 (pitch 0, {size} px); every set goes through reconstruct_same_person (detection, "
             "Face Mesh, single-view fits, leave-one-out view check, joint fit); a set of one view is the "
             "single-view fit. Dense RMSE (mm) over the face area after similarity alignment, the head taken "
             "with the front view's expression. 'views used' = views kept by the checks (a side view the "
             "detector misses is dropped). Scan: the two photos in james.jpg alone and together, RMSE (mm) "
             "of the scan crop after landmark similarity + rigid ICP (the scan protocol's 'similarity' "
             "number), first with the pipeline's default camera (40 degrees, as for any photo without EXIF), then with the photos' own field of view (calibrated from the scan's texture mapping: a portrait lens); 'mean head': the mean ICT head scored the same way; 'model floor': the ICT identity (40 modes, neutral expression) fitted to the scan crop itself, the best any photo-based fit could reach with this model. 'joint solver': the one view refitted by the joint fit's solver (its 12 more "
             "iterations alone change a single view's error), the like-for-like baseline. 'mean identity': the prior's mean face with the view's fitted expression (what the landmarks add to the prior). Target: two real views cut the scan error by >= 30 % against the better single view. "
             "mvfnet: head, overlays" + ("" if ctx.smoke else " and turntable") + " in multiview/mvfnet/."]
    if networks is not None:
        notes.append("Networks (with the regress method): the single-view regressor on one view, the two-view "
                     "network on two (the more frontal first), and on one photo plus its synthetic second view "
                     "(the fit turned 30 degrees toward the other side of frontal, rendered with the photo's "
                     "texture). Scored like the fit rows; the same face boxes from the detector.")
    return ProtocolResult("multiview", {"fit": summary}, rows, notes, "scan reduction vs better photo %")
