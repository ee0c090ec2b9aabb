"""On-the-fly synthetic training samples rendered by the core renderer.

One sample: an ICT head (identity from the prior, a few random ARKit shapes), posed with yaw in
[-90, 90] and pitch and roll in [-25, 25] degrees at a random distance and place in a virtual
512 px photo (the pipeline's 40 degree camera), a skin texture, SH lighting, a random background,
sometimes an occluder. The crop is the one inference takes (``posmap.crop_window``) around a box
like the detector's: the box of the projected 68 landmark vertices, which matched MediaPipe's boxes
on renders of this kind (median side ratio 0.98; centre within 0.07 and side within 0.10 of the box
side, one standard deviation; scripts/measure_regress_boxes.py). The seeds' augmentations are applied to the crop: translation and
scale jitter, in-plane rotation, horizontal flip (20 %, the ground truth mirrored through the
model's mirror map), per-channel colour scale in [0.6, 1.4] and input dropout.

The crop is rendered directly (a camera whose focal length, principal point and roll realise the
crop's affine map), so no resampling blurs it, and the target is exact. Samples are a pure function
of (seed, index): training is reproducible and resumes on the same stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..camera import Camera, rotation_from_angles
from ..errors import FaceReconError
from ..landmarks import Roi
from ..evaluation.synthetic import skin_texture   # the evaluation set's skin model, shared
from ..model import FACE_AREA, HeadModel, load_model, sample_identity
from ..posmap import CropWindow, crop_window, detector_like_box, landmark_heatmaps, to_crop_frame, uv_layout
from ..render.lighting import random_lighting
from ..render.renderer import render_head

PHOTO_SIZE = 512   # the virtual photo the head is placed in (only its camera and box matter)
# rows (yaw deg, centre offset along the final crop's x and y axes in its sides, log side ratio,
# angle difference rad): the first crop against the final one (scripts/measure_detection_framing.py)
DETECTION_FRAMING_FILE = Path(__file__).with_name("detection_framing.npz")
# a drawn offset comes from a face within this many degrees of yaw of the sample's
DETECTION_FRAMING_YAW = 7.5


@dataclass(frozen=True)
class DataSettings:
    input_size: int = 128
    yaw: float = 90.0
    pitch: float = 25.0
    roll: float = 25.0
    distance_cm: tuple[float, float] = (35.0, 100.0)
    max_expressions: int = 4
    translate: float = 15.0 / 256.0        # of the crop side (the seeds' +-15 px at 256)
    scale: tuple[float, float] = (0.85, 1.15)
    rotate: float = 45.0                   # in-plane, degrees
    flip: float = 0.2
    color_scale: tuple[float, float] = (0.6, 1.4)
    dropout_prob: float = 0.2              # share of samples with input dropout
    dropout_rate: float = 0.1              # share of pixels zeroed in those
    occluder_prob: float = 0.3
    supersample: int = 2
    # input variants (the network's in_channels must match): a second view of the same head for the
    # two-view network (3 more channels), and K landmark heatmaps for the landmark-guided one
    views: int = 1
    heatmaps: int = 0                      # 0 or 68 (Gaussians at the projected iBUG-68 vertices)
    heatmap_sigma: float = 2.0             # pixels of the input crop
    heatmap_jitter: float = 1.5            # pixels: detector-like noise on the landmark positions
    # the crop around the head: "detector" (the regressors': around a detector-like box) or
    # "landmarks" (Face Mesh's: its points' box, levelled, as facerecon.landmarks.landmark_roi)
    framing: str = "detector"
    # with "landmarks": the share of samples framed as the estimator's first pass frames a face
    # (its detection's box, 1.5x, levelled by the eyes), drawn from what our detector gave on
    # renders at the sample's yaw (DETECTION_FRAMING_FILE)
    detection_share: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "DataSettings":
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def roi_offset(final: Roi, first: Roi) -> tuple[float, float, float, float]:
    """``first`` relative to ``final``: its centre's offset along ``final``'s crop axes (in its
    sides), log side ratio and angle difference (radians, wrapped to (-pi, pi])."""
    c, n = math.cos(final.angle), math.sin(final.angle)
    delta = (np.asarray(first.centre, np.float64) - final.centre) / final.side
    turn = math.remainder(first.angle - final.angle, 2 * math.pi)
    return float(delta @ (c, -n)), float(delta @ (n, c)), math.log(first.side / final.side), turn


def offset_roi(final: Roi, offset: np.ndarray) -> Roi:
    """The inverse of :func:`roi_offset`: the ROI at ``offset`` (4,) from ``final``."""
    c, n = math.cos(final.angle), math.sin(final.angle)
    centre = final.centre + final.side * (offset[0] * np.array([c, -n]) + offset[1] * np.array([n, c]))
    return Roi(centre, final.side * math.exp(offset[2]), final.angle + float(offset[3]))


@lru_cache(maxsize=1)
def detection_offsets() -> np.ndarray:
    """(N, 5) float32 rows of DETECTION_FRAMING_FILE, sorted by yaw."""
    if not DETECTION_FRAMING_FILE.exists():
        raise FaceReconError(f"{DETECTION_FRAMING_FILE} is missing: run scripts/measure_detection_framing.py")
    rows = np.load(DETECTION_FRAMING_FILE)["rows"]
    return rows[np.argsort(rows[:, 0])]


def detection_framed(final: Roi, yaw_deg: float, rng: np.random.Generator, rows: np.ndarray) -> Roi:
    """``final`` (the landmarks' crop) moved to where the first pass's crop of a face at
    ``yaw_deg`` lies: the offset of a measured face within DETECTION_FRAMING_YAW of it, at random
    (the nearest measured face where none is that close)."""
    near = np.flatnonzero(np.abs(rows[:, 0] - yaw_deg) <= DETECTION_FRAMING_YAW)
    pick = rng.choice(near) if len(near) else int(np.argmin(np.abs(rows[:, 0] - yaw_deg)))
    return offset_roi(final, rows[pick, 1:])


def random_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour field with noise, and in half the samples some blurred clutter shapes."""
    field = cv2.resize(rng.uniform(0, 255, (4, 4, 3)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    if rng.uniform() < 0.5:
        for _ in range(rng.integers(1, 6)):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(size // 16, size // 3, 2))
            cv2.ellipse(field, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                        tuple(float(c) for c in rng.uniform(0, 255, 3)), -1)
        field = cv2.GaussianBlur(field, (0, 0), 1.5)
    return np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)


def add_occluder(image: np.ndarray, eyes: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a hand-like blob, hair strands or glasses over the crop, in place. ``eyes``: (2, 2)
    crop pixels of the eye centres (where glasses go)."""
    size = image.shape[0]
    kind = rng.integers(3)
    if kind == 0:      # a hand or object: a skin- or random-coloured ellipse from the border
        colour = rng.uniform(60, 230, 3) * (np.array([1.0, 0.8, 0.7]) if rng.uniform() < 0.6 else 1.0)
        side = rng.integers(4)
        t = rng.uniform(0.2, 0.8) * size
        centre = [(t, size), (t, 0), (0, t), (size, t)][side]
        axes = (int(rng.uniform(0.15, 0.35) * size), int(rng.uniform(0.25, 0.5) * size))
        cv2.ellipse(image, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(c) for c in colour), -1, cv2.LINE_AA)
    elif kind == 1:    # hair strands: dark curves across the forehead and cheeks
        colour = tuple(float(c) for c in rng.uniform(10, 90, 3))
        for _ in range(rng.integers(5, 20)):
            pts = np.cumsum(rng.normal(0, size * 0.06, (6, 2)), 0) + rng.uniform(0, size, 2)
            cv2.polylines(image, [pts.astype(np.int32)], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    else:              # glasses: two rims and a bridge at the eyes
        colour = tuple(float(c) for c in rng.uniform(0, 120, 3))
        span = np.linalg.norm(eyes[1] - eyes[0])
        radius = max(2, int(span * rng.uniform(0.35, 0.5)))
        thick = max(1, int(span * 0.06))
        for eye in eyes:
            cv2.circle(image, tuple(int(v) for v in eye), radius, colour, thick, cv2.LINE_AA)
        cv2.line(image, tuple(int(v) for v in eyes[0]), tuple(int(v) for v in eyes[1]), colour, thick, cv2.LINE_AA)


@dataclass
class Sample:
    image: np.ndarray      # (S, S, 3) uint8 crop
    posmap: np.ndarray     # (S, S, 3) float32 target, crop frame
    points: np.ndarray     # (V, 3) float32 crop-frame positions of all model vertices
    flipped: bool
    cm_per_unit: float     # centimetres per crop-frame unit near the face (for errors in mm)
    camera: Camera         # the crop's camera (before any flip)
    vertices: np.ndarray   # (V, 3) model-frame cm, the head (before any flip)
    rotation: np.ndarray   # model -> crop camera (before any flip)
    translation: np.ndarray
    mask: np.ndarray       # (S, S) bool, where the head covers the crop (before occluders; flipped with the image)
    extra: np.ndarray | None = None   # (C, S, S) float32 more input channels (second view, heatmaps)


class SyntheticFaces:
    """Index -> sample, deterministic per (seed, index). Picklable, for DataLoader workers."""

    def __init__(self, textures: np.ndarray, settings: DataSettings, seed: int, length: int = 10 ** 9):
        self.textures, self.settings, self.seed, self.length = textures, settings, seed, length
        self._model: HeadModel | None = None

    @property
    def model(self) -> HeadModel:
        if self._model is None:
            self._model = load_model()
        return self._model

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def __len__(self) -> int:
        return self.length

    def head(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        identity = sample_identity(rng, m)
        expression = np.zeros(m.n_expression, np.float32)
        n = rng.integers(0, self.settings.max_expressions + 1)
        active = rng.choice(m.n_expression, size=n, replace=False)
        expression[active] = rng.uniform(0.1, 0.9, n)
        return identity, expression

    def window(self, cam_vertices: np.ndarray, photo: Camera, yaw_deg: float,
               rng: np.random.Generator) -> tuple[CropWindow, float]:
        """The un-jittered crop window in the photo and its roll (radians) for the settings' framing."""
        if self.settings.framing == "landmarks":
            return landmark_window(cam_vertices, photo, yaw_deg, self.settings, rng)
        return crop_window(detector_like_box(cam_vertices, photo, self.model)), 0.0

    def sample(self, index: int, flip: bool | None = None, occlude: bool = True, augment_colour: bool = True,
               pose: tuple[float, float, float] | None = None,
               shape: tuple[np.ndarray, np.ndarray] | None = None, extra: bool = True) -> Sample:
        s, m = self.settings, self.model
        rng = np.random.default_rng([self.seed, index])
        identity, expression = shape if shape is not None else self.head(rng)
        vertices = m.shape(identity, expression)
        yaw, pitch, roll = pose if pose is not None else (
            rng.uniform(-s.yaw, s.yaw), rng.uniform(-s.pitch, s.pitch), rng.uniform(-s.roll, s.roll))
        rotation = rotation_from_angles(yaw, pitch, roll)
        photo = Camera.for_image(PHOTO_SIZE, PHOTO_SIZE)
        distance = rng.uniform(*s.distance_cm)
        reach = 0.25 * distance * PHOTO_SIZE / 2 / photo.focal     # keep the face well inside the photo
        centre = vertices[FACE_AREA].mean(0)
        translation = np.r_[rng.uniform(-reach, reach, 2), distance] - rotation @ centre
        cam_vertices = (vertices @ rotation.T + translation).astype(np.float32)

        # the framing's window, then the crop with the seeds' jitter
        window, level = self.window(cam_vertices, photo, yaw, rng)
        camera, roll_z, _ = jittered_crop(photo, window, level, s, rng)
        size = s.input_size
        render_rotation = roll_z @ rotation
        render_translation = roll_z @ translation
        texture = self.textures[rng.integers(len(self.textures))]
        result = render_head(m, vertices, render_rotation, render_translation, camera, texture,
                             random_lighting(rng), background=random_background(size, rng),
                             supersample=s.supersample)
        image = (result.image * 255 + 0.5).astype(np.uint8)
        cam_crop = (vertices @ render_rotation.T + render_translation).astype(np.float32)
        ref_depth = float(cam_crop[FACE_AREA, 2].mean())
        crop_frame = CropWindow(size / 2 - 0.5, size / 2 - 0.5, size)
        points = to_crop_frame(cam_crop, camera.focal, camera.cx, camera.cy, crop_frame, ref_depth)

        if occlude and rng.uniform() < s.occluder_prob:
            eyes = camera.project(cam_crop[m.landmarks68[[36, 45]]])
            add_occluder(image, eyes, rng)
        flipped = rng.uniform() < s.flip if flip is None else flip
        mask = result.alpha > 0.5
        if flipped:
            image, points = flip_sample(image, points, m)
            mask = np.ascontiguousarray(mask[:, ::-1])
        if augment_colour:
            image = colour_augment(image, rng, s)
        posmap = uv_layout(m, size).render(points)
        channels = []
        if extra and s.views == 2:
            # the same head turned 30-60 degrees toward the other side of frontal: a front + side pair
            other = yaw - np.sign(yaw + 1e-9) * rng.uniform(30.0, 60.0)
            second = self.sample(index + 1_000_000_007, flip=flipped, occlude=occlude, augment_colour=augment_colour,
                                 pose=(float(np.clip(other, -s.yaw, s.yaw)), pitch, roll),
                                 shape=(identity, expression), extra=False)
            channels.append(second.image.transpose(2, 0, 1).astype(np.float32) / 255.0)
        if extra and s.heatmaps:
            pixels = (points[m.landmarks68[:s.heatmaps], :2] + 1) * size / 2 - 0.5
            channels.append(landmark_heatmaps(pixels + rng.normal(0, s.heatmap_jitter, pixels.shape), size,
                                              s.heatmap_sigma))
        return Sample(np.ascontiguousarray(image), posmap, points, flipped, ref_depth * (size / 2) / camera.focal,
                      camera, vertices, render_rotation, render_translation, mask,
                      np.concatenate(channels) if channels else None)

    def __getitem__(self, index: int):
        sample = self.sample(index)
        layout = uv_layout(self.model, self.settings.input_size)
        image = np.ascontiguousarray(sample.image.transpose(2, 0, 1), np.float32) / 255.0
        if sample.extra is not None:
            image = np.concatenate([image, sample.extra])
        return image, np.ascontiguousarray(sample.posmap.transpose(2, 0, 1)), layout.weights


def landmark_window(cam_vertices: np.ndarray, photo: Camera, yaw_deg: float, s: DataSettings,
                    rng: np.random.Generator) -> tuple[CropWindow, float]:
    """The estimator's final crop of a head (camera-frame vertices (V, 3) cm) in ``photo``, or in
    ``s.detection_share`` of the draws its first pass's crop: window and roll (radians)."""
    from ..fit import load_correspondence
    from ..geometry import surface_points
    from ..landmarks import landmark_roi
    corr = load_correspondence()
    roi = landmark_roi(photo.project(surface_points(cam_vertices, corr.vertices, corr.bary)))
    # no draw without a share, so that older configs keep their sample streams
    if s.detection_share and rng.uniform() < s.detection_share:
        roi = detection_framed(roi, yaw_deg, rng, detection_offsets())
    return CropWindow(float(roi.centre[0]) - 0.5, float(roi.centre[1]) - 0.5, roi.side), roi.angle


def jittered_crop(photo: Camera, window: CropWindow, level: float, s: DataSettings,
                  rng: np.random.Generator) -> tuple[Camera, np.ndarray, np.ndarray]:
    """The crop of ``window`` in ``photo`` with the settings' scale, shift and in-plane rotation
    jitter (about ``level`` radians): the crop's camera, the roll (3, 3) that turns photo-camera
    points into crop-camera ones, and the (2, 3) affine map from photo pixels to crop pixels.

    Crop pixel q = Rot(theta) k (p - window centre) + size/2 - 0.5, realised as a camera: rolling
    the points about the optical axis rotates their projections about the principal point."""
    side = window.side * rng.uniform(*s.scale)
    window = CropWindow(window.cx + rng.uniform(-1, 1) * s.translate * side,
                        window.cy + rng.uniform(-1, 1) * s.translate * side, side)
    size, k = s.input_size, s.input_size / window.side
    theta = level + math.radians(rng.uniform(-s.rotate, s.rotate))
    c, sn = math.cos(theta), math.sin(theta)
    roll_z = np.array([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])
    linear = k * roll_z[:2, :2]
    offset = size / 2 - 0.5 - linear @ np.array([window.cx, window.cy])
    pp = linear @ np.array([photo.cx, photo.cy]) + offset
    camera = Camera(photo.focal * k, float(pp[0]), float(pp[1]), size, size)
    return camera, roll_z, np.column_stack([linear, offset])


def flip_sample(image: np.ndarray, points: np.ndarray, model: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the crop left-right; the head seen in it is the mirror head, so vertex j of the new
    ground truth is the mirror partner of j, reflected (x -> -x in the crop frame)."""
    return (np.ascontiguousarray(image[:, ::-1]),
            points[model.mirror_vertex] * np.array([-1.0, 1.0, 1.0], np.float32))


def colour_augment(image: np.ndarray, rng: np.random.Generator, s: DataSettings) -> np.ndarray:
    out = image.astype(np.float32) * rng.uniform(*s.color_scale, 3)
    if rng.uniform() < s.dropout_prob:
        out[rng.uniform(size=out.shape[:2]) < s.dropout_rate] = 0.0
    return np.clip(out, 0, 255).astype(np.uint8)


def texture_library(bases: list[np.ndarray], count: int, seed: int) -> np.ndarray:
    """(count, S, S, 3) skin textures: the real baked atlases in turn, each with a random tone,
    tint, blotches and pores."""
    rng = np.random.default_rng([seed, 7919])
    return np.stack([skin_texture(bases[k % len(bases)], rng) for k in range(count)])


def bake_real_textures(size: int = 256, folders: tuple[Path, ...] = (), max_yaw: float = 30.0) -> list[np.ndarray]:
    """Real skin atlases from the main job: the shipped example photo, and every face of at least
    80 px turned less than ``max_yaw`` degrees in the photos under ``folders`` (so that most of the
    atlas is seen, not mirror-filled)."""
    from ..load import PHOTO_SUFFIXES, load_image
    from ..pipeline import Reconstructor
    photos = [Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"]
    for folder in folders:
        photos += sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    atlases = []
    with Reconstructor(texture_size=size, method="fit") as run:
        for photo in photos:
            try:
                faces = run(load_image(photo))
            except FaceReconError:
                continue
            for face in faces:
                box = face.detection.box
                if min(box[2] - box[0], box[3] - box[1]) >= 80 and abs(face.fit.angles[0]) < max_yaw:
                    run.add_texture(face)
                    atlases.append(face.texture)
    return atlases
