"""A synthetic test set with exact 3D ground truth, rendered by the project's own renderer.

Identities come from the ICT prior (one fixed seed per identity), each with a random sparse
expression, a skin texture and random lighting and background; every render is saved as a PNG
with an ``.npz`` of its ground truth beside it so the set can be reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..camera import Camera, rotation_from_angles
from ..model import FACE_AREA, HeadModel, sample_identity
from ..render.lighting import random_lighting
from ..render.renderer import render_head

YAWS = (-80.0, -60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0, 80.0)
PITCHES = (-15.0, 0.0, 15.0)
SIZES = (256, 512)
SEED_BASE = 20240   # identity k uses seed SEED_BASE + k: the same heads in every run
# Camera distance (cm) at the default 40 degree field of view: the face spans about 40 % of the image.
DISTANCE_CM = 50.0


@dataclass(frozen=True)
class SyntheticSample:
    image_path: Path
    image: np.ndarray         # (size, size, 3) uint8 RGB, the render
    identity_index: int
    yaw_deg: float
    pitch_deg: float
    size: int                 # image width = height, pixels
    vertices: np.ndarray      # (V, 3) float32 model-frame cm, the ground-truth head
    rotation: np.ndarray      # (3, 3) model -> camera
    translation: np.ndarray   # (3,) cm
    camera: Camera


@dataclass(frozen=True)
class SyntheticHead:
    index: int
    identity: np.ndarray      # (n_identity,) prior coefficients (standard normal)
    expression: np.ndarray    # (53,) ICT weights in [0, 1], a few non-zero
    texture: np.ndarray       # (S, S, 3) uint8 atlas


def skin_texture(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A per-identity skin texture from a baked real ``base`` atlas (S, S, 3) uint8: a random skin
    tone (brightness and tint), low-frequency blotches and pore-scale noise."""
    size = base.shape[0]
    tone = rng.uniform(0.55, 1.15) * np.clip(1.0 + rng.normal(0.0, 0.06, 3), 0.85, 1.15)
    blotch = cv2.resize(rng.normal(1.0, 0.06, (12, 12, 3)).astype(np.float32), (size, size),
                        interpolation=cv2.INTER_CUBIC)
    pores = rng.normal(0.0, 6.0, (size, size, 1)).astype(np.float32)
    return np.clip(base.astype(np.float32) * tone * blotch + pores, 0, 255).astype(np.uint8)


def random_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: a smooth random colour field with noise (no faces in it)."""
    field = cv2.resize(rng.uniform(0, 255, (4, 4, 3)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    return np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)


def make_heads(model: HeadModel, base_texture: np.ndarray, n_identities: int, first: int = 0) -> list[SyntheticHead]:
    """Identities ``first .. first + n_identities - 1``: the evaluation uses 0.., calibration
    scripts a range of their own (so that nothing is tuned on the evaluation's heads)."""
    heads = []
    for k in range(first, first + n_identities):
        rng = np.random.default_rng(SEED_BASE + k)
        identity = sample_identity(rng, model)
        expression = np.zeros(model.n_expression, np.float32)
        active = rng.choice(model.n_expression, size=3, replace=False)
        expression[active] = rng.uniform(0.15, 0.6, 3)
        heads.append(SyntheticHead(k, identity, expression, skin_texture(base_texture, rng)))
    return heads


def render_sample(model: HeadModel, head: SyntheticHead, yaw: float, pitch: float, size: int,
                  out_dir: Path) -> SyntheticSample:
    """Render one view, write ``<name>.png`` and ``<name>.npz`` (ground truth) into ``out_dir``."""
    rng = np.random.default_rng([SEED_BASE + head.index, int(yaw) + 1000, int(pitch) + 1000, size])
    vertices = model.shape(head.identity, head.expression)
    rotation = rotation_from_angles(yaw, pitch, rng.uniform(-5.0, 5.0))
    centre = vertices[FACE_AREA].mean(0)
    jitter = np.r_[rng.uniform(-2.0, 2.0, 2), 0.0]
    translation = np.r_[0.0, 0.0, DISTANCE_CM] + jitter - rotation @ centre
    camera = Camera.for_image(size, size)
    result = render_head(model, vertices, rotation, translation, camera, head.texture,
                         random_lighting(rng), background=random_background(size, rng), supersample=2)
    image = (result.image * 255 + 0.5).astype(np.uint8)
    name = f"id{head.index:02d}_yaw{int(yaw):+03d}_pitch{int(pitch):+03d}_{size}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    np.savez_compressed(out_dir / f"{name}.npz", vertices=vertices, rotation=rotation,
                        translation=translation, yaw_pitch_deg=np.array([yaw, pitch]),
                        camera=np.array([camera.focal, camera.cx, camera.cy, size, size]),
                        identity=head.identity, expression=head.expression)
    return SyntheticSample(path, image, head.index, yaw, pitch, size, vertices, rotation, translation, camera)
