"""The scan, stage by stage: views -> cameras -> dense depth -> fusion -> texture -> scale -> files.

``prepare`` reads the inputs and finds the cameras; ``reconstruct`` turns views with cameras into the
subject's textured mesh (an evaluation can hold views out between the two); ``ScanResult.save``
writes the mesh files, the JSON and the overlays into one folder, atomically.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ScanInputError
from ..export import FORMATS, atomic_folder, export_surface, write_image, write_json
from .bake import TexturedMesh, bake, rasterize_view
from .cameras import CameraSet, apply_known, find_known_cameras, structure_from_motion
from .depth import DepthSettings, dense_depth
from .fusion import FusionSettings, Subject, find_subject, fuse, subject_points, vertex_support
from .segment import segment_views
from .human import HUMAN_VIEW_SHARE, HeadFitSettings, ScannedHead, head_for_scan, head_scale
from .motion import still_stretch
from .scale import ARBITRARY, Scale, length_scale, marker_scale
from .views import MIN_VIEWS, Views, load_views

SUBJECTS = ("auto", "human", "animal", "object")
CAT_CASCADE = "haarcascade_frontalcatface_extended.xml"


@dataclass(frozen=True)
class ScanSettings:
    subject: str = "auto"
    max_side: int = 960                 # views are read at most this size (cameras, texture)
    dense_side: int = 480               # ... and matched at most this size
    texture_size: int = 1024
    scale_mm: float | None = None       # the subject's longest side, when known
    marker_mm: float | None = None      # the printed ArUco marker's side, when one is in view
    known_cameras: bool = True          # use a camera file beside the photos where there is one
    depth: DepthSettings = DepthSettings()
    fusion: FusionSettings = FusionSettings()


@dataclass
class ScanResult:
    mesh: TexturedMesh               # world units (see ``scale``)
    scale: Scale
    cameras: CameraSet
    views: Views
    subject: Subject
    cat_faces: list[dict]
    timings: dict[str, float] = field(default_factory=dict)
    head: ScannedHead | None = None  # a person's scan: the ICT head fitted to it (``human.py``)

    def metres(self) -> np.ndarray:
        """(N, 3) the mesh in metres, or in the world's own units where the scale is arbitrary."""
        return self.mesh.vertices * np.float32(self.scale.metres_per_unit or 1.0)

    def summary(self, settings: ScanSettings) -> dict:
        vertices = self.metres()
        unit = "m" if self.scale.metric else "world units"
        return {
            "subject": "human" if self.head else settings.subject if settings.subject != "auto" else (
                "animal" if self.cat_faces else "object"),
            "views": {"given": len(self.views), "used": [self.views.names[i] for i in self.cameras.keep],
                      "source": self.views.source},
            "cameras": {"source": self.cameras.source, "registered": len(self.cameras.keep),
                        "reprojection_px": self.cameras.reprojection_px,
                        "convention": "OpenCV axes, x_cam = R x_world + t, K at the view's size (width, height)",
                        "views": [{"name": self.views.names[i], "K": c.K.round(4).tolist(), "R": c.R.round(8).tolist(),
                                   "t": c.t.round(8).tolist(), "width": c.width, "height": c.height}
                                  for c, i in zip(self.cameras.cameras, self.cameras.keep)]},
            "scale": self.scale.as_json(),
            "mesh": {"vertices": len(self.mesh.vertices), "faces": len(self.mesh.faces),
                     f"extent_{unit.replace(' ', '_')}": np.ptp(vertices, axis=0).round(6).tolist(),
                     "texture_seen": round(self.mesh.seen, 4)},
            "region": {"lower": self.subject.lower.tolist(), "upper": self.subject.upper.tolist(),
                       "dropped_plane_share": round(self.subject.plane_share, 4)},
            "cat_faces": self.cat_faces,
            "head": self.head.as_json() if self.head else None,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "settings": {"max_side": settings.max_side, "dense_side": settings.dense_side,
                         "texture_size": settings.texture_size, "depth": asdict(settings.depth),
                         "fusion": asdict(settings.fusion)},
        }

    def save(self, out_dir: Path, settings: ScanSettings, formats=FORMATS, units: str = "m",
             overlays: bool = True, turntable: bool = False) -> dict[str, Path]:
        """All the scan's files in ``out_dir``, or none of them (an atomic folder); with ``turntable``,
        ``scan_turntable.gif`` and ``.mp4``."""
        with atomic_folder(out_dir) as target:
            paths = export_surface(target, "scan", self.metres(), self.mesh.uv, self.mesh.faces, self.mesh.texture,
                                   formats, units, metric=self.scale.metric)
            if turntable:
                paths.update(write_turntable(self.mesh, self.cameras.cameras, target))
            summary = self.summary(settings)
            summary["files"] = {k: p.name for k, p in paths.items()}
            summary["units"] = {f: ("m" if f == "glb" else units) if self.scale.metric else "arbitrary"
                                for f in formats}
            if overlays:
                (target / "overlays").mkdir()
                for camera, i in zip(self.cameras.cameras, self.cameras.keep):
                    image = overlay(self.views.images[i], self.mesh, camera)
                    write_image(target / "overlays" / f"{Path(self.views.names[i]).stem}.jpg", image)
            if self.head:
                head = self.head.reconstruction
                head_paths = head.save(target, "head", formats, overlays=False, units=units)
                summary["files"].update({f"head_{k}": p.name for k, p in head_paths.items()})
                paths.update({f"head_{k}": p for k, p in head_paths.items()})
                if overlays:
                    for view in head.used:
                        write_image(target / "overlays" / f"{Path(view.source).stem}_head.jpg", head.overlay(view))
            paths["json"] = write_json(target / "scan.json", summary)
        return {k: Path(out_dir) / p.name for k, p in paths.items()}


def write_turntable(mesh: TexturedMesh, cameras, folder: Path) -> dict[str, Path]:
    from ..render.visualize import save_turntable
    from .turntable import turntable_frames
    paths = {"turntable_gif": folder / "scan_turntable.gif", "turntable_mp4": folder / "scan_turntable.mp4"}
    save_turntable(turntable_frames(mesh, cameras), paths["turntable_gif"], paths["turntable_mp4"])
    return paths


def overlay(image: np.ndarray, mesh: TexturedMesh, camera) -> np.ndarray:
    """The photo with the mesh drawn over it, shaded by how it faces the camera (half transparent)."""
    fragments = rasterize_view(mesh.vertices, mesh.faces, camera)
    mask = fragments.mask
    out = image.copy()
    if mask.any():
        tri = mesh.vertices[mesh.faces[fragments.triangle[mask]]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        ray = camera.centre - tri.mean(1)
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
        shade = np.clip(np.einsum("nc,nc->n", normal, ray), 0, 1)[:, None] * np.array([120, 200, 255.0])
        out[mask] = (0.4 * out[mask] + 0.6 * shade).astype(np.uint8)
    return out


def cat_faces(views: Views) -> list[dict]:
    """Cat faces (OpenCV's Haar cascade) per view: name and (x, y, w, h) boxes in its pixels."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CAT_CASCADE))
    found = []
    for name, image in zip(views.names, views.images):
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        side = min(grey.shape)
        boxes = cascade.detectMultiScale(grey, 1.1, 5, minSize=(side // 10, side // 10))
        if len(boxes):
            found.append({"view": name, "boxes": np.asarray(boxes).tolist()})
    return found


def shows_faces(views: Views) -> bool:
    """Whether the face detector finds a face in more than ``HUMAN_VIEW_SHARE`` of the views."""
    from ..detect import FaceDetector
    with FaceDetector() as detector:
        found = sum(bool(detector.detect(image, 1)) for image in views.images)
    return found > HUMAN_VIEW_SHARE * len(views)


def prepare(inputs: list[Path], settings: ScanSettings = ScanSettings(), log=lambda line: None) -> tuple[Views, CameraSet]:
    """Read the views and find their cameras (a camera file beside the photos, else SfM)."""
    if settings.subject not in SUBJECTS:
        raise ScanInputError(f"--subject must be one of {', '.join(SUBJECTS)}, got {settings.subject!r}")
    inputs = [Path(p) for p in inputs]
    known = None
    if settings.known_cameras and len(inputs) == 1 and inputs[0].is_dir():
        known = find_known_cameras(inputs[0])
    views = load_views(inputs, settings.max_side, known.files if known else None)
    if known is not None:
        log(f"cameras: {known.path.name}")
        return views, apply_known(known, views)
    try:
        cameras = structure_from_motion(views, log)
    except ScanInputError as exc:
        if settings.subject in ("auto", "human") and views.source == "photos" and shows_faces(views):
            raise ScanInputError(f"{exc}. They show a face: where a person turned before a still camera the "
                                 "head, not the room, must be the rigid object, and skin gives too little to match "
                                 "on it; `facerecon reconstruct --same-person` fits one head to such photos") from None
        raise
    # a clip's cameras come from what holds still: check that the subject is part of it
    return views, still_stretch(views, cameras, log) if views.source == "video" else cameras


def reconstruct(views: Views, cameras: CameraSet, settings: ScanSettings = ScanSettings(),
                progress=lambda stage, done, total: None, head_settings: HeadFitSettings = HeadFitSettings(),
                run=None) -> ScanResult:
    """The subject's textured mesh from views with cameras (``cameras.keep`` picks the views), and
    for a person (``settings.subject`` human, or auto and faces in most views) the ICT head fitted
    to it. ``run``: a Reconstructor for the head's detector and landmarks (else one is made)."""
    if len(cameras.keep) < MIN_VIEWS:
        raise ScanInputError(f"{len(cameras.keep)} views with cameras: a scan needs at least {MIN_VIEWS}")
    timings = {}
    images = [views.images[i] for i in cameras.keep]
    t = time.perf_counter()
    maps = dense_depth(images, cameras.cameras, cameras.points, settings.dense_side, settings.depth,
                       lambda done, total: progress("dense depth", done, total))
    if sum(bool((m.depth > 0).any()) for m in maps) < MIN_VIEWS:
        raise ScanInputError("fewer than 3 views found depths that their neighbours confirm: the views do not "
                             "overlap, or the subject moved")
    timings["dense_depth"] = time.perf_counter() - t
    t = time.perf_counter()
    progress("fusion", 0, 1)
    subject = find_subject(subject_points(maps), cameras.cameras, settings.fusion)
    surface = fuse(maps, subject, settings.fusion)
    timings["fusion"] = time.perf_counter() - t
    progress("fusion", 1, 1)
    scale = ARBITRARY
    if settings.marker_mm:
        scale = marker_scale(images, cameras.cameras, settings.marker_mm) or scale
    head = None
    if settings.subject in ("auto", "human"):
        t = time.perf_counter()
        progress("head fit", 0, 1)
        length = scale if scale.metric or not settings.scale_mm else length_scale(surface.vertices, settings.scale_mm)
        head = head_for_scan(images, [views.names[i] for i in cameras.keep], cameras.cameras, surface.vertices,
                             surface.faces, settings.subject, length.metres_per_unit, settings.texture_size,
                             head_settings, run, vertex_support(surface.vertices, maps, subject, settings.fusion))
        if head is not None:
            timings["head_fit"] = time.perf_counter() - t
        progress("head fit", 1, 1)
    cats = cat_faces(views) if settings.subject == "animal" or (settings.subject == "auto" and head is None) else []
    if settings.subject == "animal" or cats:
        # a pet is filmed in a room, against furniture it touches: each view cut to it, fused again.
        # The cut costs clean subjects a little (docs/scan.md: the dino's IoU, the heads'
        # identity), so people and objects keep every depth.
        t = time.perf_counter()
        progress("fusion", 0, 1)
        surface = fuse(segment_views(maps, subject, settings.fusion), subject, settings.fusion)
        timings["fusion"] += time.perf_counter() - t
        progress("fusion", 1, 1)
    if settings.scale_mm and not scale.metric:
        scale = length_scale(surface.vertices, settings.scale_mm)
    if head is not None and not scale.metric:
        scale = head_scale(head)
    t = time.perf_counter()
    progress("texture", 0, 1)
    mesh = bake(surface.vertices, surface.faces, images, cameras.cameras, settings.texture_size)
    timings["texture"] = time.perf_counter() - t
    progress("texture", 1, 1)
    return ScanResult(mesh, scale, cameras, views, subject, cats, timings, head)
