"""``auto``: ``fit`` for faces turned less than ``DENSE_FROM_YAW``, ``dense`` for faces turned more.

Face Mesh's points (``fit``) are the better ones on real, hand-marked photos of faces up to about
35 degrees of yaw (the helen_train faces the network's training held out: 68-point NME 1-6 % below
``dense``'s in every 10-degree bin), but they break down on turned faces, where the dense
network's fixed surface points hold (synthetic renders of heads the evaluation does not use:
``fit``/``dense`` NME 1.3x up to 40 degrees, 1.6x at 40-50, 1.9x at 50-60, 3.2x at 60-70, 7-14x
beyond, where Face Mesh often gives up or returns a head turned 20-40 degrees too little). The
real photos' own ratio where they fill a bin, beyond it the renders' ratio scaled by the real
photos' (0.75 of it where both have faces), crosses 1 at 33.8 degrees for the ninth-stage network:
``scripts/calibrate_auto_method.py --every 4``.

The yaw that decides is the dense network's: its points posed on the mean head by PnP (a
millisecond). The network's first pass alone decides the faces well inside the switch, so a
frontal face costs one extra network pass.
"""
from __future__ import annotations

import time

import numpy as np

from ..camera import Camera
from ..detect import Detection
from . import BaseMethod, Estimate, Shared
from . import dense as dense_fit
from .dense import DenseLandmarkFit
from .fit import LandmarkFit

DENSE_FROM_YAW = 34.0   # degrees; calibrated by scripts/calibrate_auto_method.py (module docstring)
# The dense network's first pass alone decides faces this far inside the switch: its yaw is within
# 5.9 degrees of the whole estimate's for 99 % of the calibration faces
# (scripts/calibrate_auto_method.py). The rest, and crops it is unsure of, get the whole estimate.
GLANCE_MARGIN = 10.0


class TurnAwareFit(BaseMethod):
    name = "auto"
    network_attributes = ()

    def __init__(self, shared: Shared):
        super().__init__(shared)
        self.face_mesh = LandmarkFit(shared)
        self.dense = DenseLandmarkFit(shared)

    def load(self) -> None:
        super().load()
        self.dense.load()

    def close(self) -> None:
        self.dense.close()

    def yaw(self, points: np.ndarray, camera: Camera) -> float:
        return self.dense.yaw(points, camera)

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        t0 = time.perf_counter()
        glance = self.dense.estimator.glance(image, detection)
        yaw, dense = self.yaw(glance.points, camera), None
        if glance.presence < dense_fit.MIN_PRESENCE or abs(yaw) >= DENSE_FROM_YAW - GLANCE_MARGIN:
            dense = self.dense.place(image, detection, camera)
            yaw = None if dense is None else self.yaw(dense.points, camera)
        placed_ms = (time.perf_counter() - t0) * 1000
        chosen = None
        if yaw is None or abs(yaw) < DENSE_FROM_YAW:
            chosen = self.face_mesh.estimate(image, detection, camera)
        if chosen is not None:
            chosen.fit.extra["method"] = "fit"
        else:   # turned, or Face Mesh gave up on the face
            if dense is None and yaw is not None:
                dense = self.dense.place(image, detection, camera)
            if dense is None:
                return None
            chosen = Estimate(self.dense.fit_landmarks(dense, camera), dense)
            chosen.fit.extra["method"] = "dense"
        chosen.landmarks_ms += placed_ms
        seen = "no dense points" if yaw is None else f"yaw {yaw:.1f} deg by the dense network"
        chosen.fit.extra["chosen_by"] = f"auto: {seen} (dense from {DENSE_FROM_YAW:.0f} deg)"
        return chosen
