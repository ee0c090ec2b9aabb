"""Texture baking on synthetic photos: the ICT neutral head, coloured by a known smooth function of
the model-frame position, rendered over a blue background. Every baked texel can then be checked
against the colour it should have."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from facerecon.camera import Camera, rotation_from_angles
from facerecon.model import EXPORTED_PARTS, HeadModel, load_model
from facerecon.render.raster import interpolate, rasterize
from facerecon.texture import bake_texture

SIZE = 512
BACKGROUND = np.array([20, 40, 230], np.float32)
MIRROR = np.array([-1.0, 1.0, 1.0], np.float32)


def colour_of(points: np.ndarray) -> np.ndarray:
    """Skin-like RGB (N, 3) float32 of model-frame points (N, 3) cm: smooth, asymmetric in x, with
    a fine ripple (0.6 cm period) that only a per-texel lookup, not the vertices, can reproduce."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    ripple = 12 * np.sin(8 * x + 7 * y)
    return np.stack([185 + 40 * np.sin(0.45 * x + 0.3 * y),
                     140 + 35 * np.sin(0.5 * y - 0.25 * z + 0.35 * x) + ripple,
                     115 + 30 * np.cos(0.4 * x - 0.2 * y + 0.1 * z)], axis=1).astype(np.float32)


@dataclass
class Atlas:
    """What each texel of the atlas should show, from the test's own UV rasterisation."""

    mask: np.ndarray       # (S, S) texels inside a UV island (eyeballs excluded)
    point: np.ndarray      # (S, S, 3) model-frame position, cm
    part: np.ndarray       # (S, S) index into EXPORTED_PARTS, -1 outside

    @property
    def colour(self) -> np.ndarray:
        return colour_of(self.point.reshape(-1, 3)).reshape(self.point.shape)

    @property
    def mirrored_colour(self) -> np.ndarray:
        return colour_of(self.point.reshape(-1, 3) * MIRROR).reshape(self.point.shape)


def uv_raster(model: HeadModel, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertex, uv, tri = model.export_topology
    xy = np.stack([uv[:, 0] * SIZE - 0.5, (1 - uv[:, 1]) * SIZE - 0.5], axis=1)
    frags = rasterize(xy, np.ones(len(xy)), tri[triangles], SIZE, SIZE)
    point = interpolate(frags, model.neutral[vertex], tri[triangles])
    part = np.where(frags.mask, model.triangle_part[triangles][frags.triangle], -1)
    return frags.mask, point, part


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return load_model()


@pytest.fixture(scope="module")
def atlas(model) -> Atlas:
    eyeballs = [EXPORTED_PARTS.index("eyeball_left"), EXPORTED_PARTS.index("eyeball_right")]
    return Atlas(*uv_raster(model, np.flatnonzero(~np.isin(model.triangle_part, eyeballs))))


def photo(model: HeadModel, yaw: float, shift_up_cm: float = 0.0) -> tuple[np.ndarray, np.ndarray, Camera]:
    """A 640x512 photo of the coloured neutral head 60 cm away, and its camera-frame vertices."""
    camera = Camera.for_image(640, 512)
    rotation = rotation_from_angles(yaw, 5.0, 3.0)
    verts = (model.neutral @ rotation.T + np.array([0.5, 1.0 - shift_up_cm, 60.0])).astype(np.float32)
    frags = rasterize(camera.project(verts), verts[:, 2], model.triangles, camera.height, camera.width)
    point = interpolate(frags, model.neutral, model.triangles)
    image = np.where(frags.mask[..., None], colour_of(point.reshape(-1, 3)).reshape(point.shape), BACKGROUND)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), verts, camera


@pytest.fixture(scope="module", params=[60.0, -60.0], ids=["yaw+60", "yaw-60"])
def yawed(request, model):
    image, verts, camera = photo(model, request.param)
    return request.param, bake_texture(image, verts, camera, model, SIZE)


@pytest.fixture(scope="module")
def frontal(model):
    image, verts, camera = photo(model, 10.0)
    return bake_texture(image, verts, camera, model, SIZE)


def error(baked, expected) -> np.ndarray:
    return np.abs(baked.astype(np.float32) - expected).max(axis=-1)


def test_output_types(frontal):
    assert frontal.image.shape == (SIZE, SIZE, 3) and frontal.image.dtype == np.uint8
    assert frontal.visibility.shape == (SIZE, SIZE) and frontal.visibility.dtype == np.float32
    assert 0.0 <= frontal.visibility.min() and frontal.visibility.max() == pytest.approx(1.0)


def test_visible_texels_match_photo(frontal, yawed, atlas):
    for baked in (frontal, yawed[1]):
        seen = atlas.mask & (baked.visibility > 0.9)
        assert seen.sum() > 0.15 * atlas.mask.sum()
        err = error(baked.image[seen], atlas.colour[seen])
        assert np.mean(err) < 2.5 and np.percentile(err, 99) < 10


def test_hidden_side_filled_from_mirror(yawed, atlas):
    yaw, baked = yawed
    # The cheek turned away from the camera: x of the side the face turns towards (see
    # rotation_from_angles: positive yaw turns the nose to the subject's left, +x).
    x, z = atlas.point[..., 0], atlas.point[..., 2]
    hidden = atlas.mask & (atlas.part == 0) & (np.sign(x) == np.sign(yaw)) & (np.abs(x) > 2) & (z > 6)
    unseen = hidden & (baked.visibility == 0)
    assert unseen.sum() > 0.5 * hidden.sum()
    to_mirror = error(baked.image[unseen], atlas.mirrored_colour[unseen])
    to_truth = error(baked.image[unseen], atlas.colour[unseen])
    # The colour function is asymmetric enough that the two answers differ...
    assert np.median(error(atlas.mirrored_colour[unseen], atlas.colour[unseen])) > 15
    # ...and the bake gives the mirror image's colour.
    assert np.median(to_mirror) < 4 and np.percentile(to_mirror, 90) < 12
    assert np.median(to_truth) > 3 * np.median(to_mirror)


def test_no_holes_nothing_black(frontal, yawed, atlas):
    for baked in (frontal, yawed[1]):
        image = baked.image.astype(np.float32)
        assert image.sum(-1).min() > 150                                   # nothing black anywhere
        assert np.abs(image[atlas.mask] - BACKGROUND).max(-1).min() > 60     # no background inside


def test_midline_has_no_seam(yawed, atlas):
    _, baked = yawed
    image = baked.image.astype(np.float32)
    x = atlas.point[..., 0]
    # Horizontally adjacent face texels on either side of the midline (x changes sign).
    left, right = atlas.point[:, :-1], atlas.point[:, 1:]
    pairs = (atlas.mask[:, :-1] & atlas.mask[:, 1:] & (atlas.part[:, :-1] == 0) & (atlas.part[:, 1:] == 0)
             & (np.sign(x[:, :-1]) != np.sign(x[:, 1:])) & (left[..., 2] > 5) & (right[..., 2] > 5))
    assert pairs.sum() > 100
    jump = np.abs(image[:, 1:] - image[:, :-1])[pairs].max(-1)
    expected = np.abs(atlas.colour[:, 1:] - atlas.colour[:, :-1])[pairs].max(-1)
    assert np.mean(jump - expected) < 1.5 and np.percentile(jump - expected, 98) < 6


def test_back_of_head_is_skin(yawed, atlas):
    _, baked = yawed
    back = atlas.mask & (atlas.part == 1) & (atlas.point[..., 2] < -5) & (np.abs(atlas.point[..., 0]) < 3)
    assert baked.visibility[back].max() == 0.0
    assert back.sum() > 500
    # A shaded skin tone taken from the well-seen face: within the face's colour range (less a
    # little shading), nearly uniform and smooth, and far from the background.
    face = baked.image[atlas.mask & (atlas.part == 0) & (baked.visibility > 0.9)].astype(np.float32)
    image = baked.image.astype(np.float32)
    colour = image[back]
    assert np.all(colour >= 0.8 * np.percentile(face, 2, axis=0))
    assert np.all(colour <= np.percentile(face, 98, axis=0))
    assert np.all(colour.std(axis=0) < 15)
    assert np.abs(colour - BACKGROUND).max(-1).min() > 100
    for axis in (0, 1):
        step = np.abs(np.diff(image, axis=axis)).max(-1)
        pairs = back[1:] & back[:-1] if axis == 0 else back[:, 1:] & back[:, :-1]
        assert step[pairs].max() <= 4


def test_eyeballs_from_the_better_seen_eye(model, yawed):
    yaw, baked = yawed
    eyes = {}
    for name in ("eyeball_left", "eyeball_right"):
        mask, point, _ = uv_raster(model, np.flatnonzero(model.triangle_part == EXPORTED_PARTS.index(name)))
        eyes[name] = (mask, colour_of(point.reshape(-1, 3)).reshape(point.shape))
    # Positive yaw turns the left eye (+x) away from the camera.
    seen, hidden = ("eyeball_right", "eyeball_left") if yaw > 0 else ("eyeball_left", "eyeball_right")
    texels = eyes[seen][0] & eyes[hidden][0] & (baked.visibility > 0.9)
    assert texels.sum() > 200
    to_seen = error(baked.image[texels], eyes[seen][1][texels])
    to_hidden = error(baked.image[texels], eyes[hidden][1][texels])
    assert np.median(to_seen) < 4 and np.median(to_hidden) > 3 * np.median(to_seen)


def test_visibility_zero_where_unseen(model, yawed, atlas):
    _, baked = yawed
    back = atlas.mask & (atlas.point[..., 2] < -5) & (np.abs(atlas.point[..., 0]) < 3)
    assert back.sum() > 1000 and baked.visibility[back].max() == 0.0
    covered, _, _ = uv_raster(model, np.arange(len(model.triangles)))
    assert baked.visibility[~covered].max() == 0.0


def test_head_cut_by_the_photo_border(model, atlas):
    image, verts, camera = photo(model, 0.0, shift_up_cm=12.0)
    assert (image[0] != BACKGROUND.astype(np.uint8)).any(axis=-1).sum() > 50   # the crown is cut off
    baked = bake_texture(image, verts, camera, model, SIZE)
    rotation = rotation_from_angles(0.0, 5.0, 3.0)
    posed = atlas.point[atlas.mask] @ rotation.T.astype(np.float32) + np.array([0.5, -11.0, 60.0], np.float32)
    off_photo = camera.project(posed)[:, 1] < 0
    assert off_photo.sum() > 1000 and baked.visibility[atlas.mask][off_photo].max() == 0.0
    colour = baked.image[atlas.mask].astype(np.float32)
    assert colour.sum(-1).min() > 150 and np.abs(colour - BACKGROUND).max(-1).min() > 60
