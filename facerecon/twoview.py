"""Two views, one network (issue 5): the two-view position-map regressor, and the seeds' synthetic
second view.

The two-view network (``facerecon/data/regressor_twoview128.onnx``, ``configs/twoview_cpu.yaml``)
takes two 128 px crops of one head, stacked as 6 channels, and predicts the first view's position
map; training paired each render with the same head turned 30-60 degrees toward the other side of
frontal. The rest is the single-view regressor's linear fit (:mod:`facerecon.regress`).

With one photo, the second view can be made (Kwon 2021, after the rotate-and-render idea): fit the
photo, turn the fitted head ``SYNTHETIC_TURN`` degrees toward the other side of frontal about its own
centre, and render it with the texture baked from the photo. The multiview protocol measures both
against the joint landmark fit (MODEL_CARD.md): neither is used by ``--same-person``, which keeps the
joint fit, the better of the three there.
"""
from __future__ import annotations

import numpy as np

from .assets import TWOVIEW_MODEL
from .camera import Camera, rotation_from_angles
from .detect import Detection, box_detection
from .fit import FitResult
from .model import HeadModel
from .posmap import detector_like_box
from .regress import Regressor
from .render.lighting import ambient
from .render.renderer import render_head

SYNTHETIC_TURN = 30.0          # degrees, the seeds' rotation for the synthetic view
BACKGROUND_GREY = 128


def turned(fit: FitResult, model: HeadModel, degrees: float) -> FitResult:
    """The same fit with the head turned ``degrees`` of yaw about its own centre (the camera stays)."""
    turn = rotation_from_angles(degrees, 0.0, 0.0) @ rotation_from_angles(0.0, 0.0, 0.0).T  # camera-frame yaw
    centre = fit.to_camera(fit.vertices(model).mean(0, keepdims=True))[0].astype(np.float64)
    rotation = turn @ fit.rotation
    translation = centre + turn @ (fit.translation - centre)
    return FitResult(fit.identity, fit.expression, rotation, translation, fit.camera, fit.residual_px,
                     fit.residual, fit.iterations, dict(fit.extra))


def synthetic_second_view(model: HeadModel, fit: FitResult, texture: np.ndarray,
                          degrees: float = SYNTHETIC_TURN) -> tuple[np.ndarray, Detection]:
    """Render the fitted head, textured from its photo, turned ``degrees`` toward the other side of
    frontal (the side the photo shows least): an (H, W, 3) uint8 image of the photo's size, and the
    head's detection-like box in it."""
    yaw = fit.angles[0]
    other = turned(fit, model, -degrees if yaw >= 0 else degrees)
    camera = fit.camera
    background = np.full((camera.height, camera.width, 3), BACKGROUND_GREY, np.uint8)
    result = render_head(model, other.vertices(model), other.rotation, other.translation, camera, texture,
                         ambient(1.0), background=background)
    image = np.clip(result.image * 255 + 0.5, 0, 255).astype(np.uint8)
    box = detector_like_box(other.to_camera(other.vertices(model)), camera, model).astype(np.float32)
    return image, box_detection(box)


class TwoViewRegressor:
    """The two-view network and its linear fit: :meth:`fit` takes the first view (photo, face box,
    camera) and a second view of the same head (photo, face box)."""

    def __init__(self, model: HeadModel, path=TWOVIEW_MODEL):
        self.regressor = Regressor(model, path)
        if self.regressor.kind != "twoview":
            raise ValueError(f"{path} is not a two-view model ({self.regressor.channels} input channels)")

    def fit(self, image: np.ndarray, detection: Detection, camera: Camera,
            second_image: np.ndarray, second_detection: Detection) -> FitResult:
        return self.regressor.fit(image, detection, camera, second=(second_image, second_detection))[0]
