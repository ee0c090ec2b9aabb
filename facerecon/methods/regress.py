"""``regress``: a CNN predicts a UV position map, a linear fit turns it into the model (facerecon.regress)."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..assets import REGRESSOR_MODEL
from ..camera import Camera
from ..detect import Detection
from ..regress import Regressor
from . import BaseMethod, Estimate


class PositionMapRegression(BaseMethod):
    name = "regress"
    network_attributes = ("regressor",)

    @cached_property
    def regressor(self) -> Regressor:
        return Regressor(self.model, REGRESSOR_MODEL)

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        return Estimate(*self.regressor.fit(image, detection, camera))
