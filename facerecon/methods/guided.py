"""``guided``: the position-map CNN given the 68 landmarks of the ordinary fit as heatmaps too.

Its network does not ship (it measured no better than the mean head, MODEL_CARD.md); ``facerecon
train configs/guided_cpu.yaml`` makes it.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..assets import GUIDED_MODEL
from ..camera import Camera
from ..detect import Detection
from ..regress import Regressor
from . import BaseMethod, Estimate, Shared
from .fit import LandmarkFit


class GuidedRegression(BaseMethod):
    name = "guided"
    network_attributes = ("regressor",)

    def __init__(self, shared: Shared):
        super().__init__(shared)
        self.face_mesh = LandmarkFit(shared)

    @cached_property
    def regressor(self) -> Regressor:
        return Regressor(self.model, GUIDED_MODEL)

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        first = self.face_mesh.estimate(image, detection, camera)
        if first is None:
            return None
        model = self.model
        guide = camera.project(first.fit.to_camera(first.fit.vertices(model)[model.landmarks68]))
        fit, _ = self.regressor.fit(image, detection, camera, landmarks68=guide)
        return Estimate(fit, first.landmarks, first.landmarks_ms)   # Face Mesh's points, as they guided it
