"""A landmark loss on the identity a point error implies, not on its size.

The dense network's errors are small (about 1.2 px) but patterned: the fit reads them as another
identity, while the same errors shuffled across the points cost little (docs/landmarks.md, "Why
the identity stays near the mean"). So for a render with exact targets the sample carries the
linear map from its 468 x 2 target errors (crop pixels) to the identity the model fit would solve
for (its identity modes and the head's pose, linearised about the true head, identity held by a
ridge), expressed as the face-area RMS vertex offset that identity makes, in mm. The loss is the
mean of that RMS over the samples that carry one.
"""
from __future__ import annotations

import numpy as np

from ..camera import Camera
from ..geometry import surface_points
from ..landmarks import dense_surface_points, mirror_permutation
from ..model import FACE_AREA, HeadModel

# Ridge on the identity coefficients, relative to the mean diagonal of their normal matrix: modes
# the view hardly sees (the far side at profile) are not read from the error, as the fit's prior
# does not read them.
IDENTITY_RIDGE = 1e-2


_TERMS: dict[int, tuple[HeadModel, np.ndarray, np.ndarray]] = {}   # id(model) -> (model, its terms)


def _model_terms(model: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """The identity basis at the dense points (K, 468, 3) cm per unit coefficient, and the upper
    Cholesky factor (K, K) of its Gram matrix over the face area (mean per vertex): |L d| is the
    RMS face-area vertex offset (cm) of an identity change d."""
    if id(model) in _TERMS:
        return _TERMS[id(model)][1:]
    vertices, bary = dense_surface_points()
    basis = np.stack([surface_points(b, vertices, bary) for b in model.identity_basis]).astype(np.float64)
    face = model.identity_basis[:, FACE_AREA].astype(np.float64).reshape(model.n_identity, -1)
    gram = face @ face.T / len(FACE_AREA)
    _TERMS[id(model)] = model, basis, np.linalg.cholesky(gram).T
    return _TERMS[id(model)][1:]


def identity_error_matrix(model: HeadModel, rotation: np.ndarray, cam_points: np.ndarray,
                          translation: np.ndarray, camera: Camera, flipped: bool,
                          ridge: float = IDENTITY_RIDGE) -> np.ndarray:
    """(K, 936) float32: the identity (as its face-area RMS offset, mm) implied by an error of the
    (468, 2) targets, flattened x0, y0, x1, ... ; ``cam_points`` (468, 3) cm are the dense points of
    the head in the camera frame, ``rotation`` (3, 3) and ``translation`` (3,) its pose; with
    ``flipped`` the targets are those of the mirrored crop (``landmark_targets``); ``ridge`` as
    IDENTITY_RIDGE."""
    basis, chol = _model_terms(model)
    x, y, z = cam_points[:, 0], cam_points[:, 1], cam_points[:, 2]
    zeros = np.zeros_like(z)
    # d(pixel)/d(camera point): (468, 2, 3)
    project = camera.focal / z[:, None, None] * np.stack([np.stack([1 + zeros, zeros, -x / z], 1),
                                                          np.stack([zeros, 1 + zeros, -y / z], 1)], 1)
    turned = basis @ rotation.T                                   # (K, 468, 3)
    identity = np.einsum("pij,kpj->pik", project, turned)         # (468, 2, K)
    about = cam_points - translation                              # the head's points about its origin
    axes = np.eye(3)
    rotate = np.einsum("pij,apj->pia", project, np.cross(axes[:, None, :], about[None]))   # (468, 2, 3)
    jacobian = np.concatenate([identity, rotate, project], axis=2)  # (468, 2, K + 6)
    if flipped:
        jacobian = jacobian[mirror_permutation()]
        jacobian[:, 0] *= -1.0
    jacobian = jacobian.reshape(-1, jacobian.shape[2])
    k = basis.shape[0]
    normal = jacobian.T @ jacobian
    damping = np.zeros(k + 6)
    damping[:k] = ridge * np.trace(normal[:k, :k]) / k
    solve = np.linalg.solve(normal + np.diag(damping), jacobian.T)  # (K + 6, 936): error -> coefficients
    return (10.0 * chol @ solve[:k]).astype(np.float32)


def identity_loss(pred_xy, target_xy, matrices):
    """Mean face-area RMS identity offset (mm) implied by the errors ``pred_xy - target_xy``
    (N, 468, 2) over the samples whose ``matrices`` (N, K, 936) are not all zero (torch tensors)."""
    import torch
    err = (pred_xy - target_xy).reshape(len(pred_xy), -1)
    carried = matrices.abs().sum((1, 2)) > 0
    if not bool(carried.any()):
        return err.sum() * 0.0
    implied = torch.einsum("nkj,nj->nk", matrices[carried], err[carried])
    return torch.sqrt(implied.square().sum(1) + 1e-6).mean()
