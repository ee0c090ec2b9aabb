"""Reconstruct by regression: a CNN predicts a UV position map, a linear fit turns it into the ICT model.

``facerecon/data/regressor_uv128.onnx`` (trained by ``facerecon train configs/cpu.yaml``, see
MODEL_CARD.md) maps a 128 px crop around the detection box (``posmap.crop_window``, the crop
training used) to a position map: the head's surface points in the crop frame. Read at each
vertex's UV, the map gives dense 3D points for the face, head and neck. Pose, identity and
expression then come from a fast linear fit, no landmarks and no iterations of a nonlinear solver:

1. a similarity (Umeyama) of the mean head onto the regressed points sets the face's distance
   (metric model size <-> size in the crop), which lifts the map into camera-frame centimetres;
2. three rounds of: similarity of the current head onto the points (the scale goes back into the
   distance, so projections never move), then ridge least squares for the model's identity (40
   modes packaged; 100 measured the same) and 53 expression coefficients in the rotated frame
   (expression clipped to [0, 1]).

The result is a :class:`~facerecon.fit.FitResult`, so texturing, export and JSON are unchanged;
the 468 Face Mesh points are reported as projections of the fitted head.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sessions
from .assets import REGRESSOR_MODEL, missing_network
from .errors import AssetError
from .camera import Camera
from .detect import Detection
from .fit import FitResult, load_correspondence
from .geometry import surface_points, umeyama
from .landmarks import Landmarks
from .model import HeadModel, in_face_area
from .posmap import CropWindow, crop_image, crop_window, from_crop_frame, landmark_heatmaps, uv_layout

DEFAULT_MODEL = REGRESSOR_MODEL
N_HEATMAPS = 68
# input channels -> the model's kind, and the method name a fit by it reports
KINDS = {3: "image", 3 + N_HEATMAPS: "guided", 6: "twoview"}
METHOD_OF_KIND = {"image": "regress", "guided": "guided", "twoview": "twoview"}
HEATMAP_SIGMA = 2.0   # crop pixels, as in training (DataSettings.heatmap_sigma)


@dataclass(frozen=True)
class RegressSettings:
    rounds: int = 3
    # Ridge weights per coefficient (per unit of total point weight). Chosen on 40 validation renders
    # (training distribution, other seeds) for the shipped 30 min CPU model, whose maps carry pose well
    # but little shape: dense RMSE 4.83 mm at 0.002/0.001, 4.41 at 0.05/0.02, 4.32 at 0.1/2 (the mean
    # head alone: 4.33). Retune for a better-trained model.
    identity_prior: float = 0.1
    expression_prior: float = 2.0
    weight_face: float = 1.0         # point weights in the fit; the back of the head is never seen
    weight_head: float = 0.2
    threads: int = 2                 # ONNX Runtime intra-op threads
    stride: int = 2                  # fit every stride-th map vertex: neighbours carry the same information


def onnx_session(path: str | Path, threads: int):
    """An ONNX Runtime session on ``threads`` intra-op threads. The shipped models keep int8
    weights behind DequantizeLinear nodes (``training.export.shrink_onnx``); turning off
    ONNX Runtime's QDQ handling lets constant folding make them float32 once, at load, instead of
    dequantising on every call."""
    missing = missing_network(path)
    if missing is not None:
        raise AssetError(missing)
    # a batch worker's share of the cores (batch.runner.worker_threads); ONNX Runtime ignores OpenMP's variable
    return sessions.onnx_session(path, min(threads, int(os.environ.get("OMP_NUM_THREADS", threads))),
                                 {"session.disable_quant_qdq": "1"})


class Regressor:
    """Loads the ONNX position-map network once; :meth:`fit` reconstructs one detected face."""

    def __init__(self, model: HeadModel, path: str | Path = DEFAULT_MODEL,
                 settings: RegressSettings = RegressSettings()):
        self.session = onnx_session(path, settings.threads)
        shape = self.session.get_inputs()[0].shape
        self.channels, self.size = int(shape[1]), int(shape[2])
        self.model, self.settings = model, settings
        layout = uv_layout(model, self.size)
        self.layout = layout
        self.use = np.flatnonzero(layout.reliable)[::settings.stride]  # rows of layout.vertices
        vertices = layout.vertices[self.use]
        self.vertices = vertices
        self.weights = np.where(in_face_area(vertices), settings.weight_face, settings.weight_head)
        self.mean = model.neutral[vertices].astype(np.float64)
        basis = np.concatenate([model.identity_basis[:, vertices], model.expression_basis[:, vertices]], 0)
        self.basis = basis.reshape(len(basis), -1).T.astype(np.float64)  # (3n, 153)
        wb = self.basis * np.repeat(self.weights, 3)[:, None]
        normal = self.basis.T @ wb
        normal[np.diag_indices(model.n_identity)] += settings.identity_prior * self.weights.sum()
        idx = np.arange(model.n_identity, len(normal))
        normal[idx, idx] += settings.expression_prior * self.weights.sum()
        self.solve_matrix = np.linalg.inv(normal) @ wb.T                # (153, 3n): coefficients from targets

    @property
    def kind(self) -> str:
        """"image" (3 channels), "guided" (3 + 68 landmark heatmaps) or "twoview" (two crops, 6)."""
        return KINDS.get(self.channels, "unknown")

    def _crop(self, image: np.ndarray, detection: Detection) -> tuple[np.ndarray, CropWindow]:
        window = crop_window(detection.box)
        return (crop_image(image, window, self.size).astype(np.float32) / 255.0).transpose(2, 0, 1), window

    def predict(self, image: np.ndarray, detection: Detection, landmarks68: np.ndarray | None = None,
                second: tuple[np.ndarray, Detection] | None = None) -> tuple[np.ndarray, CropWindow]:
        """The network's points for ``self.vertices`` (n, 3) in the crop frame of ``image``, and that
        crop window. A guided model needs ``landmarks68`` ((68, 2) pixels of ``image``); a two-view
        model needs ``second``: another photo of the same head and its face's detection."""
        x, window = self._crop(image, detection)
        if self.kind == "guided":
            if landmarks68 is None:
                raise ValueError("this landmark-guided regressor needs the 68 landmarks")
            pixels = np.c_[landmarks68[:, :2], np.ones(len(landmarks68))] @ window.to_crop(self.size).T
            x = np.concatenate([x, landmark_heatmaps(pixels, self.size, HEATMAP_SIGMA)])
        elif self.kind == "twoview":
            if second is None:
                raise ValueError("this two-view regressor needs a second view")
            x = np.concatenate([x, self._crop(*second)[0]])
        elif self.kind != "image":
            raise ValueError(f"no input of {self.channels} channels is known to this regressor")
        posmap = self.session.run(None, {"image": np.ascontiguousarray(x[None])})[0][0].transpose(1, 2, 0)
        return self.layout.sample(posmap)[self.use], window

    def fit_points(self, points_crop: np.ndarray, window, camera: Camera) -> FitResult:
        """The linear model fit to regressed crop-frame points (see the module docstring)."""
        m, s = self.model, self.settings
        half = window.side / 2
        scale = umeyama(self.mean, points_crop.astype(np.float64), weights=self.weights).scale
        ref_depth = camera.focal / (scale * half)            # scale = crop units per cm at that depth
        target = from_crop_frame(points_crop.astype(np.float64), camera.focal, camera.cx, camera.cy, window, ref_depth)
        shape = self.mean
        coeffs = np.zeros(m.n_identity + m.n_expression)
        for _ in range(s.rounds):
            placed = umeyama(shape, target, weights=self.weights)
            rotation = placed.rotation   # the scale goes into the distance: same projection
            target, translation = target / placed.scale, placed.translation / placed.scale
            local = (target - translation) @ rotation - self.mean
            coeffs = self.solve_matrix @ local.ravel()
            coeffs[m.n_identity:] = np.clip(coeffs[m.n_identity:], 0.0, 1.0)
            shape = self.mean + (self.basis @ coeffs).reshape(-1, 3)
        placed = umeyama(shape, target, weights=self.weights)
        rotation = placed.rotation
        target, translation = target / placed.scale, placed.translation / placed.scale
        fitted = shape @ rotation.T + translation
        pixels = camera.project(fitted)
        observed = camera.project(target)
        err = np.linalg.norm(pixels - observed, axis=1)[in_face_area(self.vertices)]
        size = float(np.sqrt(np.prod(observed.max(0) - observed.min(0))))
        return FitResult(identity=coeffs[:m.n_identity].astype(np.float32),
                         expression=coeffs[m.n_identity:].astype(np.float32),
                         rotation=rotation, translation=translation, camera=camera,
                         residual_px=float(err.mean()), residual=float(err.mean() / size),
                         iterations=s.rounds, extra={"method": METHOD_OF_KIND[self.kind]})

    def fit(self, image: np.ndarray, detection: Detection, camera: Camera, landmarks68: np.ndarray | None = None,
            second: tuple[np.ndarray, Detection] | None = None) -> tuple[FitResult, Landmarks]:
        """Reconstruct the face in ``detection`` (inputs as :meth:`predict`): the fit, and the 468
        Face Mesh points of the fitted head."""
        points, window = self.predict(image, detection, landmarks68, second)
        fit = self.fit_points(points, window, camera)
        return fit, fitted_landmarks(fit, self.model, camera, detection)


def fitted_landmarks(fit: FitResult, model: HeadModel, camera: Camera, detection: Detection) -> Landmarks:
    """The 468 Face Mesh points of a fitted head, as Face Mesh reports them: pixels, and z = depth
    relative to the face in pixels at its distance (methods without landmarks report these)."""
    corr = load_correspondence()
    cam_points = fit.to_camera(surface_points(fit.vertices(model), corr.vertices, corr.bary))
    depth = cam_points[:, 2]
    z = (depth - depth.mean()) * camera.focal / depth.mean()
    return Landmarks(np.column_stack([camera.project(cam_points), z]).astype(np.float32), detection)
