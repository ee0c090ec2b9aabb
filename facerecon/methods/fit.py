"""``fit``: Face Mesh's 468 landmarks, then the model fit to them (facerecon.fit)."""
from __future__ import annotations

import time

import numpy as np

from ..camera import Camera
from ..detect import Detection
from ..landmarks import Landmarks
from . import BaseMethod, Estimate, Shared


class LandmarkFit(BaseMethod):
    name = "fit"

    def __init__(self, shared: Shared):
        super().__init__(shared)
        self.estimator, self.fitter = shared.estimator, shared.fitter   # the Reconstructor's: it closes them

    def place(self, image: np.ndarray, detection: Detection, camera: Camera) -> Landmarks | None:
        return self.estimator.estimate(image, detection)

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        t0 = time.perf_counter()
        landmarks = self.place(image, detection, camera)
        if landmarks is None:
            return None
        t1 = time.perf_counter()
        return Estimate(self.fitter.fit(landmarks.points, camera), landmarks, (t1 - t0) * 1000)
