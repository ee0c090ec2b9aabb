"""The main job: photo -> a textured, metric 3D head for every face in it.

Stages: load -> detect -> the method (landmarks + fit, or a network; ``facerecon.methods``) ->
texture -> export / render.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from . import methods
from .assets import PACKAGE_DATA
from .blendshapes import arkit_weights
from .camera import Camera
from .detect import Detection, DetectionResult, FaceDetector
from .errors import FitError, NoFaceError
from .export import export_mesh, mesh_info, write_json
from .fit import FitResult, Fitter, load_correspondence
from .geometry import surface_points
from .gltf import Rig
from .landmarks import LandmarkEstimator, Landmarks
from .load import as_rgb8, exif_focal_35mm, load_image
from .model import HeadModel, load_model
from .options import (DEFAULT_TEXTURE_SIZE, FORMATS, ReconstructOptions, check_fov_deg, check_max_faces,
                      check_texture_size)
from .texture import bake_texture


def decimals(values: np.ndarray, places: int) -> np.ndarray:
    """``values`` rounded in float64, so that the JSON holds 223.68, not float32's 223.67999267578125."""
    return np.asarray(values, np.float64).round(places)


@lru_cache(maxsize=1)
def load_landmarks68() -> tuple[np.ndarray, np.ndarray]:
    """The 68 iBUG landmarks as surface points: vertex indices (68, 3) and barycentrics (68, 3)."""
    data = np.load(PACKAGE_DATA / "landmarks68_ict.npz")
    return data["vertices"], data["bary"]


@dataclass
class FaceReconstruction:
    """One reconstructed face. Mesh coordinates are in the model frame (cm, y up, z out of the face)."""

    index: int                      # rank in the photo (0 = highest detection score)
    detection: Detection
    landmarks: Landmarks            # the 468 Face Mesh points in image pixels
    fit: FitResult
    vertices: np.ndarray            # (V, 3) float32 cm, all ICT vertices
    texture: np.ndarray | None      # (S, S, 3) uint8 RGB, ICT atlas layout (None until baked)
    model: HeadModel = field(repr=False)
    image: np.ndarray = field(repr=False)   # (H, W, 3) uint8 RGB, the photo (shared, not copied)
    source: str | None = None       # the photo's path, when it came from a file
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def camera(self) -> Camera:
        return self.fit.camera

    @property
    def vertices_camera(self) -> np.ndarray:
        """(V, 3) vertices in the camera frame (OpenCV axes, cm)."""
        return self.fit.to_camera(self.vertices)

    def landmarks68(self) -> tuple[np.ndarray, np.ndarray]:
        """68 iBUG landmarks: image pixels (68, 2) and model-frame cm (68, 3)."""
        corners, bary = load_landmarks68()
        model_pts = surface_points(self.vertices, corners, bary)
        return self.camera.project(self.fit.to_camera(model_pts)), model_pts

    def landmarks468_model(self) -> np.ndarray:
        """The 468 Face Mesh points on the fitted head: model-frame cm (468, 3)."""
        corr = load_correspondence()
        return surface_points(self.vertices, corr.vertices, corr.bary)

    def to_dict(self) -> dict:
        """Everything a user needs, JSON-ready (see README for the field meanings)."""
        yaw, pitch, roll = self.fit.angles
        lm68_px, lm68_cm = self.landmarks68()
        cam = self.camera
        return {
            "source": self.source,
            "face_index": self.index,
            "image_size": [cam.width, cam.height],
            "box": [round(float(v), 2) for v in self.detection.box],
            "score": round(float(self.detection.score), 4),
            "landmarks": {
                "facemesh468": {"pixels": decimals(self.landmarks.points[:, :2], 2),
                                 "relative_depth_px": decimals(self.landmarks.points[:, 2], 2),
                                 "model_cm": decimals(self.landmarks468_model(), 4),
                                 **({} if self.landmarks.sigma is None else
                                    {"sigma_px": decimals(self.landmarks.sigma, 2)})},
                "ibug68": {"pixels": decimals(lm68_px, 2), "model_cm": decimals(lm68_cm, 4)},
            },
            "pose": {
                "yaw_deg": round(yaw, 3), "pitch_deg": round(pitch, 3), "roll_deg": round(roll, 3),
                "model_to_camera": decimals(self.fit.pose_matrix, 6),
                "convention": "X_cam = M @ [X_model, 1]; camera axes x right, y down, z forward (OpenCV); "
                              "model axes x subject's left, y up, z out of the face; cm. Yaw > 0: face "
                              "turned toward image right; pitch > 0: looking up; roll > 0: clockwise tilt.",
            },
            "camera": {"focal_px": round(cam.focal, 3), "cx": cam.cx, "cy": cam.cy,
                       "width": cam.width, "height": cam.height, "fov_deg": round(cam.fov_deg, 3),
                       "focal_source": cam.source},
            "blendshapes_arkit": arkit_weights(self.model.expression_names, self.fit.expression),
            "expression_ict": {n: round(float(w), 5) for n, w in
                               zip(self.model.expression_names, self.fit.expression)},
            "identity": decimals(self.fit.identity, 5),
            "fit": {"method": self.fit.extra.get("method", "fit"),
                    **{key: self.fit.extra[key] for key in ("fallback", "chosen_by") if key in self.fit.extra},
                    "landmark_presence": round(float(self.landmarks.presence), 4),
                    "residual_px": round(self.fit.residual_px, 3),
                    "residual_rel": round(self.fit.residual, 5), "iterations": self.fit.iterations},
            "units": "cm",
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }

    def bake_texture(self, size: int = DEFAULT_TEXTURE_SIZE) -> None:
        """Bake the face's UV texture (``size`` px square) from its photo."""
        t0 = time.perf_counter()
        self.texture = bake_texture(self.image, self.vertices_camera, self.camera, self.model,
                                    check_texture_size(size)).image
        self.timings_ms["texture"] = (time.perf_counter() - t0) * 1000

    def rig(self) -> Rig:
        """The GLB's animation rig: the fitted identity, expression, pose and camera."""
        return Rig(self.fit.identity, self.fit.expression, self.fit.pose_matrix, self.camera)

    def save(self, out_dir: str | Path, stem: str | None = None, formats: tuple[str, ...] = FORMATS,
             units: str = "m", morph_targets: bool = True, texture_size: int = DEFAULT_TEXTURE_SIZE) -> dict[str, Path]:
        """Write the mesh files (OBJ and PLY in ``units``, the GLB in metres, with the expression
        shapes as morph targets unless ``morph_targets`` is False) and ``<stem>.json`` into
        ``out_dir``; returns the paths by kind. A face reconstructed ``with_texture=False`` has its
        texture baked now, ``texture_size`` px square (every format carries the texture)."""
        if self.texture is None:
            self.bake_texture(texture_size)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = stem or f"face{self.index}"
        t0 = time.perf_counter()
        rig = self.rig() if morph_targets else None
        paths = export_mesh(out_dir, stem, self.vertices, self.texture, self.model, formats, units, rig)
        self.timings_ms["export"] = (time.perf_counter() - t0) * 1000
        paths["json"] = out_dir / f"{stem}.json"
        write_json(paths["json"], {**self.to_dict(), "mesh_files": mesh_info(formats, units, rig, self.model)})
        return paths


class Reconstructor:
    """Holds the models (detector, Face Mesh, head model, fitter, the methods used); call it on photos.

    Not thread-safe (the fitter and texture baker keep per-call state): use one per thread or process.
    """

    def __init__(self, texture_size: int = DEFAULT_TEXTURE_SIZE, max_faces: int | None = None,
                 method: str = methods.DEFAULT_METHOD, fov_deg: float | None = None):
        """``method``: one of :func:`facerecon.methods.names` (an unknown one is a ValueError, one
        whose network does not ship an AssetError naming its training config). ``fov_deg``: the
        photos' field of view across the longer side, when known; otherwise each photo's EXIF focal
        length is used where it has one, else ``camera.DEFAULT_FOV_DEG``. Values outside the limits
        of :mod:`facerecon.options` are a ValueError, as on the command line."""
        self.method = methods.require(method).name
        self.fov_deg = check_fov_deg(fov_deg)
        self.texture_size = check_texture_size(texture_size)
        self.max_faces = check_max_faces(max_faces)
        # The stages' matrix products are small (a few thousand points by tens of modes): split over
        # the cores by OpenBLAS they cost more than they give, its threads spinning after each
        # call (measured: the main job's CPU halved with one). Process-wide, as OpenBLAS's setting is.
        threadpool_limits(1, user_api="blas")
        self.model = load_model()
        self.fitter = Fitter(self.model)
        self.detector = FaceDetector()
        self.estimator = LandmarkEstimator()
        self._methods: dict[str, methods.Method] = {}
        self.get_method().load()   # now, so that per-face timings do not include loading

    @classmethod
    def for_options(cls, options: ReconstructOptions) -> "Reconstructor":
        return cls(options.texture_size, options.max_faces, options.method, options.fov_deg)

    def get_method(self, name: str | None = None) -> methods.Method:
        """The method ``name`` (default: this Reconstructor's), made on first use and kept."""
        name = self.method if name is None else name
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = methods.create(name, methods.Shared(self.model, self.estimator, self.fitter))
        return method

    def close(self) -> None:
        for method in self._methods.values():
            method.close()
        self.detector.close()
        self.estimator.close()

    def __enter__(self) -> "Reconstructor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def camera_for(self, image: np.ndarray, photo: str | Path | None = None) -> Camera:
        """The camera of a photo: the given field of view, else the file's EXIF 35 mm-equivalent
        focal length, else the default field of view."""
        height, width = image.shape[:2]
        if self.fov_deg is not None:
            return Camera.for_image(width, height, self.fov_deg, source="given")
        focal_35mm = exif_focal_35mm(photo) if photo is not None else None
        if focal_35mm is not None:
            return Camera.from_35mm_equivalent(width, height, focal_35mm)
        return Camera.for_image(width, height)

    def detect(self, image: np.ndarray) -> DetectionResult:
        return self.detector.run(image, self.max_faces)

    def reconstruct_face(self, image: np.ndarray, detection: Detection, camera: Camera,
                         source: str | None = None, with_texture: bool = True,
                         method: str | None = None) -> FaceReconstruction | None:
        """One face from its detection; None if the method finds no face in the box. ``method``
        overrides the Reconstructor's (see :func:`get_method`). Raises FitError if the head cannot
        be fitted (degenerate landmarks, a non-finite result)."""
        chosen = self.get_method(method)
        try:
            return self._reconstruct_face(image, detection, camera, source, with_texture, chosen)
        except FitError as exc:
            cause, reason = exc, str(exc)
        except (cv2.error, np.linalg.LinAlgError) as exc:  # the solvers' own failures on degenerate points
            cause = exc
            reason = f"the head could not be fitted to this face ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        raise FitError(f"{source or 'image'}: {reason}") from cause  # named by the photo, as every user error is

    def _reconstruct_face(self, image: np.ndarray, detection: Detection, camera: Camera, source: str | None,
                          with_texture: bool, method: methods.Method) -> FaceReconstruction | None:
        t0 = time.perf_counter()
        estimate = method.estimate(image, detection, camera)
        if estimate is None:
            return None
        fit, landmarks = estimate.fit, estimate.landmarks
        vertices = fit.vertices(self.model)
        if not (np.isfinite(vertices).all() and np.isfinite(fit.pose_matrix).all() and np.isfinite(fit.residual_px)):
            raise FitError("the fit of this face did not converge (non-finite result)")
        method_ms = (time.perf_counter() - t0) * 1000
        face = FaceReconstruction(0, detection, landmarks, fit, vertices, None, self.model, image, source,
                                  {"landmarks": estimate.landmarks_ms, "fit": method_ms - estimate.landmarks_ms})
        if with_texture:
            self.add_texture(face)
        return face

    def add_texture(self, face: FaceReconstruction) -> None:
        """Bake the face's UV texture from its photo, at this Reconstructor's texture size."""
        face.bake_texture(self.texture_size)

    def __call__(self, photo: str | Path | np.ndarray) -> list[FaceReconstruction]:
        """Reconstruct every face; raises NoFaceError if there is none (large enough)."""
        t0 = time.perf_counter()
        source = None
        if isinstance(photo, (str, Path)):
            source = str(photo)
            image = load_image(photo)
        else:
            image = as_rgb8(np.asarray(photo))
        t_load = time.perf_counter()
        found = self.detect(image)
        found.raise_if_empty(source or "image")
        t_detect = time.perf_counter()
        camera = self.camera_for(image, source)
        results = []
        for detection in found.faces:
            face = self.reconstruct_face(image, detection, camera, source)
            if face is None:
                continue
            face.index = len(results)
            face.timings_ms.update(load=(t_load - t0) * 1000 / len(found.faces),
                                   detect=(t_detect - t_load) * 1000 / len(found.faces))
            results.append(face)
        if not results:
            raise NoFaceError(f"{source or 'image'}: faces detected but no landmarks could be placed")
        return results


def draw_overlay(faces: list[FaceReconstruction]) -> np.ndarray:
    """The photo with every face's head mesh and 68 landmarks drawn over it: (H, W, 3) uint8."""
    from .render.visualize import overlay
    first = faces[0]
    return overlay(first.image, [f.vertices_camera for f in faces], first.camera, first.model,
                   landmarks=[f.landmarks68()[0] for f in faces])


# reconstruct()'s one Reconstructor, for the last options it was called with. The lock makes the
# function safe to call from several threads (a Reconstructor is not): calls run one at a time;
# for parallel work give each thread its own Reconstructor.
_default: dict[tuple, Reconstructor] = {}
_default_lock = threading.Lock()


def reconstruct(photo: str | Path | np.ndarray, max_faces: int | None = None,
                texture_size: int = DEFAULT_TEXTURE_SIZE, fov_deg: float | None = None) -> list[FaceReconstruction]:
    """Reconstruct every face in a photo (a path, or an RGB array of shape (H, W, 3)). ``fov_deg``:
    the photo's field of view across its longer side, if known (else EXIF, else 40 degrees)."""
    key = (check_texture_size(texture_size), check_max_faces(max_faces), check_fov_deg(fov_deg))
    with _default_lock:
        run = _default.get(key)
        if run is None:
            for old in _default.values():
                old.close()
            _default.clear()
            run = _default[key] = Reconstructor(*key[:2], fov_deg=key[2])
        return run(photo)
