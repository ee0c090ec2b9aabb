"""The multi-view head (:class:`MultiViewReconstruction`): its JSON and its files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..blendshapes import arkit_weights
from ..export import export_mesh, mesh_info, write_image, write_json
from ..fit import load_correspondence
from ..geometry import surface_points
from ..gltf import Rig
from ..model import HeadModel
from ..pipeline import load_landmarks68
from .views import View

@dataclass
class MultiViewReconstruction:
    """One head from several photos. ``vertices`` (V, 3) cm in the model frame, with the expression
    of the reference view (the most frontal used view); ``texture`` fused from the used views."""

    model: HeadModel = field(repr=False)
    views: list[View]
    identity: np.ndarray
    reference: int                     # index into ``views`` of the view whose expression the head has
    vertices: np.ndarray = field(repr=False)
    texture: np.ndarray | None = field(default=None, repr=False)
    visibility: np.ndarray | None = field(default=None, repr=False)   # (S, S) fused direct-view weight
    texture_coverage: float = 0.0      # share of the atlas's texels seen directly by some view (w > 0.5)
    gains: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def used(self) -> list[View]:
        return [v for v in self.views if v.status == "used"]

    def view_vertices_camera(self, view: View) -> np.ndarray:
        """The head as that view sees it (its pose and expression), camera-frame cm."""
        return view.fit.to_camera(self.model.shape(self.identity, view.fit.expression))

    def overlay(self, view: View) -> np.ndarray:
        from ..render.visualize import overlay
        corners, bary = load_landmarks68()
        verts = self.view_vertices_camera(view)
        return overlay(view.image, [verts], view.camera, self.model,
                       landmarks=view.camera.project(surface_points(verts, corners, bary)))

    def to_dict(self) -> dict:
        corners, bary = load_landmarks68()
        corr = load_correspondence()
        views = []
        for v in self.views:
            entry = {"source": v.source, "status": v.status, "reason": v.reason, "faces_found": v.faces,
                     "weight": round(v.weight, 4), "leave_one_out_excess": None if v.loo is None else round(v.loo, 5)}
            if v.fit is not None:
                yaw, pitch, roll = v.fit.angles
                entry.update({
                    "image_size": [v.camera.width, v.camera.height],
                    "box": [round(float(x), 2) for x in v.detection.box],
                    "pose": {"yaw_deg": round(yaw, 3), "pitch_deg": round(pitch, 3), "roll_deg": round(roll, 3),
                             "model_to_camera": v.fit.pose_matrix.round(6)},
                    "camera": {"focal_px": round(v.camera.focal, 3), "cx": v.camera.cx, "cy": v.camera.cy,
                               "fov_deg": round(v.camera.fov_deg, 3), "focal_source": v.camera.source},
                    "landmarks": {"ibug68": {"pixels": v.camera.project(
                        surface_points(self.view_vertices_camera(v), corners, bary)).round(2)}},
                    "blendshapes_arkit": arkit_weights(self.model.expression_names, v.fit.expression),
                    "fit": {"residual_px": round(v.fit.residual_px, 3), "residual_rel": round(v.fit.residual, 5),
                            "single_view_residual_rel": round(v.solo.residual, 5)}})
            views.append(entry)
        ref = self.views[self.reference]
        return {
            "views": views,
            "used": [v.source for v in self.used],
            "rejected": [{"source": v.source, "status": v.status, "reason": v.reason}
                         for v in self.views if v.status != "used"],
            "reference_view": ref.source,
            "identity": self.identity.round(5),
            "landmarks": {"ibug68": {"model_cm": surface_points(self.vertices, corners, bary).round(4)},
                          "facemesh468": {"model_cm": surface_points(self.vertices, corr.vertices, corr.bary).round(4)}},
            "blendshapes_arkit": arkit_weights(self.model.expression_names, ref.fit.expression),
            "texture": {"coverage": round(self.texture_coverage, 4), "gains": self.gains},
            "warnings": self.warnings,
            "convention": "per-view pose: X_cam = M @ [X_model, 1] (OpenCV camera axes, cm); model axes "
                          "x subject's left, y up, z out of the face. The head's vertices carry the "
                          "reference view's expression.",
            "units": "cm",
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }

    def save(self, out_dir: str | Path, stem: str = "head", formats: tuple[str, ...] = ("obj", "glb", "ply"),
             overlays: bool = True, turntable: bool = False, units: str = "m",
             morph_targets: bool = True) -> dict[str, Path]:
        """``<stem>.obj/.glb/.ply`` (+ texture; OBJ and PLY in ``units``, the GLB in metres and, with
        ``morph_targets``, posed as the reference view), ``<stem>.json``, ``overlay_<k>_<photo>.png``
        per used view and, on request, ``<stem>_turntable.gif/.mp4``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ref = self.views[self.reference]
        rig = Rig(self.identity, ref.fit.expression, ref.fit.pose_matrix, ref.camera) if morph_targets else None
        paths = export_mesh(out_dir, stem, self.vertices, self.texture, self.model, formats, units, rig)
        paths["json"] = write_json(out_dir / f"{stem}.json",
                                   {**self.to_dict(), "mesh_files": mesh_info(formats, units, rig, self.model)})
        if overlays:
            for k, view in enumerate(self.views):
                if view.status == "used":
                    name = f"overlay_{k}_{Path(view.source).stem}.png"
                    paths[f"overlay{k}"] = write_image(out_dir / name, self.overlay(view))
        if turntable:
            from ..render.visualize import save_turntable, turntable_frames
            frames = turntable_frames(self.model, self.vertices, self.texture)
            save_turntable(frames, out_dir / f"{stem}_turntable.gif", out_dir / f"{stem}_turntable.mp4")
            paths["turntable"] = out_dir / f"{stem}_turntable.gif"
        return paths
