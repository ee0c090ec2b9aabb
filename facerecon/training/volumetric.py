"""The volumetric (VRN) variant: the same synthetic samples with occupancy volumes as targets.

Jackson et al. regress a voxel volume with per-voxel sigmoid cross-entropy; here the volume is
(D, S/2, S/2) in the crop frame (``facerecon.volume``) and the network is the position-map
network with D output channels at half resolution (``network.PosMapNet(out_stride=2)``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..volume import front_surface, occupancy
from .data import SyntheticFaces


class VolumeFaces(SyntheticFaces):
    """Index -> (image (3, S, S), occupancy (D, S/2, S/2), unused weight), deterministic per index."""

    def __init__(self, textures: np.ndarray, settings, seed: int, bins: int, length: int = 10 ** 9):
        super().__init__(textures, settings, seed, length)
        self.bins = bins

    def target(self, points: np.ndarray) -> np.ndarray:
        return occupancy(points, self.model, self.settings.input_size // 2, self.bins)

    def __getitem__(self, index: int):
        sample = self.sample(index)
        image = np.ascontiguousarray(sample.image.transpose(2, 0, 1), np.float32) / 255.0
        return image, self.target(sample.points), np.ones(1, np.float32)


def volume_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-voxel sigmoid cross-entropy (VRN's loss)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def evaluate_volumes(net, images, volumes, points, scales) -> tuple[float, float]:
    """(loss, mean distance in mm from the predicted front surface to the nearest true face-area
    vertex). Surface predicted on the head and neck counts with its distance to the face area, so
    this overstates the error; it is a training monitor, the evaluation registers the ICT head."""
    from scipy.spatial import cKDTree
    net.eval()
    with torch.no_grad():
        device = next(net.parameters()).device
        logits = torch.cat([net(images[i:i + 16].to(device).contiguous(memory_format=torch.channels_last)).cpu()
                            for i in range(0, len(images), 16)])
    net.train()
    loss = float(volume_loss(logits, volumes))
    errs = []
    for prob, truth, scale in zip(torch.sigmoid(logits).numpy(), points, scales):
        surface = front_surface(prob)
        if len(surface):
            errs.append(cKDTree(truth).query(surface)[0].mean() * scale * 10.0)
    return loss, float(np.mean(errs)) if errs else float("nan")
