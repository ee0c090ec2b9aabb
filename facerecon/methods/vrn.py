"""``vrn``: a CNN predicts an occupancy volume, the model is registered to its surface by ICP (facerecon.vrn).

Its network does not ship (MODEL_CARD.md); ``facerecon train configs/vrn_cpu.yaml`` makes it.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ..assets import VRN_MODEL
from ..camera import Camera
from ..detect import Detection
from ..vrn import VolumeRegressor
from . import BaseMethod, Estimate


class VolumetricRegression(BaseMethod):
    name = "vrn"
    network_attributes = ("regressor",)

    @cached_property
    def regressor(self) -> VolumeRegressor:
        return VolumeRegressor(self.model, VRN_MODEL)

    def load(self) -> None:
        _ = self.regressor.session      # the regressor itself loads its network on first use

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        found = self.regressor.fit(image, detection, camera)
        return None if found is None else Estimate(*found)
