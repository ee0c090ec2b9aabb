"""``regress``: a CNN predicts a UV position map, a linear fit turns it into the model (facerecon.regress)."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..assets import REGRESSOR_MODEL
from ..camera import Camera
from ..detect import Detection
from ..regress import Regressor
from . import Estimate, Shared


class PositionMapRegression:
    name = "regress"

    def __init__(self, shared: Shared):
        self.model = shared.model

    @cached_property
    def regressor(self) -> Regressor:
        return Regressor(self.model, REGRESSOR_MODEL)

    def load(self) -> None:
        _ = self.regressor

    def close(self) -> None:
        pass

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        return Estimate(*self.regressor.fit(image, detection, camera))
