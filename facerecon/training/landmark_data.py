"""Training data for the landmark network: Face Mesh's 468 points where the ICT surface puts them.

Synthetic samples are the project's renders (``data.SyntheticFaces`` with ``framing="landmarks"``:
the crop the estimator's final pass takes, levelled and 1.5x the points' box, jittered) and the
target of point i is where dense surface point i (``landmarks.dense_surface_points``) of the
rendered head projects, visible or not (Wood et al. 2022): x, y in continuous crop pixels (0..S),
z the point's depth relative to the points' mean, in the same pixels. So a fine-tuned network
learns the head's identity and pose exactly, including near profile, with no silhouette sliding.

Real samples keep the network's behaviour on real photos: HELEN training faces (``helen_train``),
cropped as the estimator crops them and jittered, with the original network's own output on the
crop as the target (distillation; the plain net without the refiner, whose weights the training
starts from). Every ``real_every``-th index is a real sample.

Re-posed samples (``repose``): real photos fitted by the main job and rendered with their own skin
over their own background at a new pose, sometimes with a new identity; their targets are exact,
as on the renders. Index i is re-posed when ``i % repose.every == 1 % repose.every`` (and not real).

A sample is (image (3, S, S) float in [0, 1], target (468 * 3,) float32, exact (1,): 1 where the
target is the surface's own projection (renders, re-posed photos), 0 where it is the teacher's
(real crops)). Only exact targets train the uncertainty head: a teacher's points are not where the
surface points lie. Samples are a pure function of (seed, index).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..detect import box_detection
from ..geometry import surface_points
from ..landmarks import (N_POINTS, LandmarkEstimator, Roi, crop_roi, dense_surface_points,
                         landmark_roi, mirror_points)
from ..load import load_image
from .data import DataSettings, SyntheticFaces, colour_augment
from .repose import FittedPhoto, ReposeSettings, reposed_sample

# The uncertainty term's weight: its gradient reaches only the head, whose step Adam normalises, so
# this only keeps the logged loss comparable with a run without the head.
NLL_WEIGHT = 0.01


def landmark_targets(cam_vertices: np.ndarray, camera, flipped: bool) -> np.ndarray:
    """(468, 3) targets of a rendered head: continuous crop pixels x, y and relative depth z."""
    points = surface_points(cam_vertices, *dense_surface_points())
    xy = camera.project(points) + 0.5
    depth = points[:, 2]
    z = (depth - depth.mean()) * camera.focal / depth.mean()
    target = np.column_stack([xy, z])
    if flipped:
        target = mirror_points(target, camera.width)
    return target.astype(np.float32)


def real_faces(folder: Path) -> list[tuple[Path, Roi]]:
    """(photo, the estimator's final crop) for every hand-marked face in ``folder`` (300-W layout)."""
    from ..evaluation.datasets import ibug300w
    faces = []
    with LandmarkEstimator(refiner_file=None) as estimator:
        for sample in ibug300w(folder.parent, subsets=(folder.name,)):
            image = load_image(sample.image_path)
            marks = estimator.estimate(image, box_detection(sample.box))
            if marks is not None:
                faces.append((sample.image_path, landmark_roi(marks.points)))
    return faces


@lru_cache(maxsize=1)
def _teacher():
    return LandmarkEstimator(refiner_file=None)


class LandmarkFaces(SyntheticFaces):
    """Index -> (image, target, weight); synthetic renders mixed with distilled real crops and
    re-posed real photos."""

    def __init__(self, textures: np.ndarray, settings: DataSettings, seed: int,
                 real: list[tuple[Path, Roi]] = (), real_every: int = 0, length: int = 10 ** 9,
                 reposed: list[FittedPhoto] = (), repose: ReposeSettings = ReposeSettings()):
        super().__init__(textures, settings, seed, length)
        self.real, self.real_every = list(real), real_every
        self.reposed, self.repose = list(reposed), repose

    def synthetic(self, index: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        s = self.sample(index, extra=False, **kwargs)
        cam_vertices = s.vertices @ s.rotation.T + s.translation
        return s.image, landmark_targets(cam_vertices, s.camera, s.flipped)

    def real_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        st = self.settings
        rng = np.random.default_rng([self.seed, index, 1])
        path, roi = self.real[rng.integers(len(self.real))]
        image = load_image(path)
        side = roi.side * rng.uniform(*st.scale)
        centre = roi.centre + rng.uniform(-1, 1, 2) * st.translate * side
        jittered = Roi(centre, side, roi.angle + math.radians(rng.uniform(-st.rotate, st.rotate)))
        crop = crop_roi(image, jittered)
        if rng.uniform() < st.flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
        raw, _ = _teacher()._net.run(None, {"image": crop.transpose(2, 0, 1)[None].astype(np.float32) / 255.0})
        return colour_augment(crop, rng, st), raw.reshape(N_POINTS, 3).astype(np.float32)

    def reposed_sample(self, index: int, **kwargs):
        """A re-posed real photo (``repose.Reposed``); keyword arguments as ``repose.reposed_sample``."""
        rng = np.random.default_rng([self.seed, index, 2])
        fitted = self.reposed[rng.integers(len(self.reposed))]
        return reposed_sample(fitted, load_image(fitted.photo), self.model, self.settings, self.repose, rng, **kwargs)

    def __getitem__(self, index: int):
        every, exact = self.repose.every, 1.0
        if self.real and self.real_every and index % self.real_every == 0:
            image, target = self.real_sample(index)
            exact = 0.0
        elif self.reposed and every and index % every == 1 % every:
            r = self.reposed_sample(index)
            image, target = r.image, r.target
        else:
            image, target = self.synthetic(index)
        image = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0
        return image, target.reshape(-1), np.full(1, exact, np.float32)

    def validation_set(self, count: int):
        """Fixed synthetic samples of another seed (no flip, occluder or colour change): images,
        targets and millimetres per crop pixel at the head."""
        val = LandmarkFaces(self.textures, self.settings, self.seed + 100_003)
        images, targets, mm_per_px = [], [], []
        for i in range(count):
            s = val.sample(i, flip=False, occlude=False, augment_colour=False, extra=False)
            cam_vertices = s.vertices @ s.rotation.T + s.translation
            images.append(s.image.transpose(2, 0, 1) / np.float32(255.0))
            targets.append(landmark_targets(cam_vertices, s.camera, False).reshape(-1))
            mm_per_px.append(10.0 * float(cam_vertices[:, 2].mean()) / s.camera.focal)
        return np.stack(images).astype(np.float32), np.stack(targets), np.array(mm_per_px)


def split_prediction(pred):
    """The network's (N, 468 * 3 [+ 468]) output -> (N, 468, 3) points and (N, 468) log sigma or None."""
    points = pred[:, :N_POINTS * 3].reshape(len(pred), N_POINTS, 3)
    return points, (pred[:, N_POINTS * 3:] if pred.shape[1] > N_POINTS * 3 else None)


def landmark_loss(pred, target, exact=None):
    """Smooth L1 in crop pixels on x, y, and on z about its mean (Face Mesh's z is relative); with an
    uncertainty head, plus the 2D Gaussian negative log-likelihood of each point's x, y error under
    its predicted sigma (the error taken as given, so that it trains the head alone), over the
    samples with exact targets."""
    import torch
    import torch.nn.functional as F
    pred, log_sigma = split_prediction(pred)
    target = target.view(len(target), N_POINTS, 3)
    xy = F.smooth_l1_loss(pred[..., :2], target[..., :2])
    z = F.smooth_l1_loss(pred[..., 2] - pred[..., 2].mean(1, keepdim=True),
                         target[..., 2] - target[..., 2].mean(1, keepdim=True))
    loss = xy + 0.25 * z
    if log_sigma is not None:
        err2 = (pred[..., :2].detach() - target[..., :2]).square().sum(-1)
        nll = (2 * log_sigma + 0.5 * err2 * torch.exp(-2 * log_sigma)).mean(1)
        mask = torch.ones_like(nll) if exact is None else exact.view(-1).to(nll.dtype)
        loss = loss + NLL_WEIGHT * (nll * mask).sum() / mask.sum().clamp(min=1)
    return loss


def _predict(net, images: np.ndarray):
    """The network's output on ``images`` (N, 3, S, S), in eval mode, 16 at a time on its device,
    returned on the CPU."""
    import torch
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(images[i:i + 16]).to(device)).cpu() for i in range(0, len(images), 16)])
    net.train()
    return pred


def evaluate_landmarks(net, images, targets, mm_per_px) -> tuple[float, float]:
    """(loss, mean 2D point error in mm at the head's depth) on the validation set."""
    import torch
    pred = _predict(net, images)
    target = torch.from_numpy(targets)
    loss = float(landmark_loss(pred, target))
    points, _ = split_prediction(pred)
    err = (points[..., :2] - target.view(-1, N_POINTS, 3)[..., :2]).norm(dim=2).mean(1).numpy()
    return loss, float(np.mean(err * mm_per_px))


def uncertainty_calibration(net, images, targets) -> tuple[float, float] | None:
    """How well the predicted sigmas match the errors on the validation set: the mean of
    |r|^2 / (2 sigma^2) over all points (1 for a calibrated 2D Gaussian) and the rank correlation of
    sigma with |r|. None for a network without the head."""
    import torch
    from scipy.stats import spearmanr
    points, log_sigma = split_prediction(_predict(net, images))
    if log_sigma is None:
        return None
    err = (points[..., :2] - torch.from_numpy(targets).view(-1, N_POINTS, 3)[..., :2]).norm(dim=2).numpy()
    sigma = np.exp(log_sigma.numpy())
    return float(np.mean(err ** 2 / (2 * sigma ** 2))), float(spearmanr(sigma.ravel(), err.ravel())[0])


def landmarks_only(module):
    """What the loss sees, as a module: the landmark output, and the uncertainty beside it when the
    network has that head ((N, 468 * 3 + 468))."""
    import torch

    class LandmarkHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = module

        def forward(self, x):
            out = self.net(x)
            return torch.cat([out[0], out[-1]], 1) if module.has_uncertainty else out[0]
    return LandmarkHead()
