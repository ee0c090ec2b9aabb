"""Real photos re-posed: the fitted head of a real photo, wearing the photo's own skin, rendered
over the photo's background at a new yaw and pitch, and sometimes with a new identity from the
prior (300W-LP's face profiling, rotate-and-render). The head's geometry is known exactly, so the
targets are exact, and the image shows real skin, hair, lighting and background.

Offline (``fit_photos``, cached): each photo is fitted by the main job (``Reconstructor``, method
``fit``; HELEN training faces from their hand-marked box, other photos from the detector), and the
fit (identity, expression, pose, camera), the texture baked from the photo (its unseen side
mirrored and filled by ``texture.bake_texture``) and how far the photo shows each vertex
(``photo_cover``) are kept in one ``.npz`` per photo.

Per sample (``reposed_sample``): the head turns about its centre by a random yaw (and pitch)
change, takes a prior identity in a share of the samples, and is rendered unlit (the texture
already carries the photo's light) in the landmark crop of its new pose. Only the surface the photo
shows, directly or in the mirror, is drawn, fading out at its edge: the bake fills the rest (the
back and top of the head) with a flat skin tone, which would give every head a bald skull; there
the photo's own hair and background show instead. The background is the photo seen through the
same crop with the original face painted out (``cv2.inpaint`` on the original head's face mask,
smoothed), so no ghost of the old face shows where the new head does not cover it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse as sp

from ..camera import Camera, angles_from_rotation, rotation_from_angles
from ..errors import FaceReconError
from ..export import atomic_path
from ..model import EXPORTED_PARTS, PARTS, HeadModel, sample_identity
from ..render.renderer import render_mesh
from .data import DataSettings, add_occluder, colour_augment, jittered_crop, landmark_window

FORMAT = 3   # of the cached files; a change makes the cache re-fit
HEAD_AREA = np.arange(PARTS["face"][0], PARTS["head_neck"][1] + 1)
COVER_RINGS = 4   # mesh rings over which the drawn region's edge fades (photo_cover)


@dataclass(frozen=True)
class ReposeSettings:
    """``data.repose_*`` in a training config."""

    every: int = 0                  # every N-th sample is re-posed (0: none)
    photos: tuple[str, ...] = ("eval/300w-helen-afw/helen_train",)   # folders, relative to the shared one
    cache: str | None = None        # folder of the fits; default <run folder>/repose
    yaw: float = 60.0               # largest yaw change, degrees
    pitch: float = 10.0             # largest pitch change, degrees
    new_identity: float = 0.5       # share of samples whose head is a prior draw
    texture_size: int = 512
    min_face_px: int = 100          # smaller faces have too little skin to show at 192 px
    max_fit_yaw: float = 45.0       # beyond it most of the texture would be mirror or fill
    inpaint_dilate: float = 0.06    # of the crop side: the painted-out margin around the old face

    @classmethod
    def from_config(cls, data: dict) -> "ReposeSettings":
        """Pops the ``repose_*`` keys from a config's ``data`` section."""
        keys = [k for k in data if k.startswith("repose_")]
        values = {k[len("repose_"):]: data.pop(k) for k in keys}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)


@dataclass(frozen=True)
class FittedPhoto:
    """One face of a real photo as the main job fitted it."""

    photo: Path
    identity: np.ndarray      # (n_identity,) float32
    expression: np.ndarray    # (53,) float32
    rotation: np.ndarray      # (3, 3) model -> camera
    translation: np.ndarray   # (3,) cm
    camera: Camera            # the photo's
    texture: bytes            # the baked atlas, JPEG-encoded RGB (decoded per sample: small to pickle)
    cover: np.ndarray         # (V,) float32 in [0, 1]: the texture there is the photo's (photo_cover)

    def texture_image(self) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.texture, np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])


def _faces_of(run, folder: Path, photo: Path, boxes: dict) -> list:
    """The main job's faces in one photo: the hand-marked one (300-W folders) or all it detects."""
    from ..detect import box_detection
    from ..load import load_image
    image = load_image(photo)
    if photo in boxes:
        face = run.reconstruct_face(image, box_detection(boxes[photo]), run.camera_for(image, photo), str(photo))
        return [face] if face is not None else []
    return run(image)


def fit_photos(folders: list[Path], cache: Path, rs: ReposeSettings, console=None) -> list[FittedPhoto]:
    """Every usable face of the photos in ``folders``, fitted once and cached under ``cache``."""
    from ..evaluation.datasets import ibug300w
    from ..pipeline import Reconstructor
    cache = Path(cache) / f"fit_t{rs.texture_size}_v{FORMAT}"
    fitted: list[FittedPhoto] = []
    run = None
    try:
        for folder in folders:
            folder = Path(folder)
            labelled = any(folder.glob("*.pts"))
            boxes = {s.image_path: s.box for s in ibug300w(folder.parent, (folder.name,))} if labelled else {}
            photos = sorted(boxes) if labelled else sorted(
                p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            out = cache / folder.name
            out.mkdir(parents=True, exist_ok=True)
            for photo in photos:
                entry = out / (str(photo.relative_to(folder)).replace("/", "__") + ".npz")
                if not entry.exists():
                    run = run or Reconstructor(texture_size=rs.texture_size, method="fit")
                    _cache_faces(run, folder, photo, boxes, entry, rs)
                fitted += _load_entry(entry, photo)
            if console is not None:
                console.print(f"{folder}: {len(photos)} photos fitted (cache {out})")
    finally:
        if run is not None:
            run.close()
    return fitted


def _cache_faces(run, folder: Path, photo: Path, boxes: dict, entry: Path, rs: ReposeSettings) -> None:
    try:
        faces = _faces_of(run, folder, photo, boxes)
    except FaceReconError:
        faces = []
    arrays: dict[str, np.ndarray] = {}
    kept = 0
    for face in faces:
        box = face.detection.box
        if min(box[2] - box[0], box[3] - box[1]) < rs.min_face_px or abs(face.fit.angles[0]) > rs.max_fit_yaw:
            continue
        cam = face.camera
        _, jpeg = cv2.imencode(".jpg", face.texture[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        arrays.update({f"identity{kept}": face.fit.identity, f"expression{kept}": face.fit.expression,
                       f"rotation{kept}": face.fit.rotation, f"translation{kept}": face.fit.translation,
                       f"camera{kept}": np.array([cam.focal, cam.cx, cam.cy, cam.width, cam.height]),
                       f"texture{kept}": np.frombuffer(jpeg.tobytes(), np.uint8),
                       f"cover{kept}": photo_cover(face.vertices_camera, cam, face.model).astype(np.float16)})
        kept += 1
    with atomic_path(entry) as tmp:
        np.savez_compressed(tmp, faces=np.int64(kept), **arrays)


def _load_entry(entry: Path, photo: Path) -> list[FittedPhoto]:
    with np.load(entry) as data:
        out = []
        for k in range(int(data["faces"])):
            f, cx, cy, w, h = data[f"camera{k}"]
            identity = data[f"identity{k}"].astype(np.float32)
            out.append(FittedPhoto(photo, identity, data[f"expression{k}"].astype(np.float32), data[f"rotation{k}"],
                                   data[f"translation{k}"], Camera(float(f), float(cx), float(cy), int(w), int(h)),
                                   data[f"texture{k}"].tobytes(),
                                   data[f"cover{k}"].astype(np.float32)))
        return out


def photo_cover(cam_vertices: np.ndarray, camera: Camera, model: HeadModel, max_side: int = 512) -> np.ndarray:
    """(V,) float32 in [0, 1]: how far each vertex's texture comes from the photo, directly or in
    the mirror, rather than from the bake's fill. A vertex is seen when a triangle of it is in the
    photo's z-buffer (at most ``max_side`` pixels across: plenty to decide visibility); seen or
    mirror-seen, smoothed over a few rings of the mesh and ramped, so that holes of a few vertices
    close and the drawn region's edge fades instead of following triangle edges."""
    index, _, triangles = model.export_topology
    scale = min(1.0, max_side / max(camera.width, camera.height))
    ids = render_mesh(cam_vertices[index], triangles, camera.scaled(scale)).triangle
    seen = np.zeros(len(cam_vertices), np.float32)
    seen[index[triangles[np.unique(ids[ids >= 0])]].ravel()] = 1.0
    known = np.maximum(seen, seen[model.mirror_vertex])
    edges = np.concatenate([model.triangles[:, [0, 1]], model.triangles[:, [1, 2]], model.triangles[:, [2, 0]]])
    n = len(known)
    adjacency = sp.coo_matrix((np.ones(len(edges), np.float32), (edges[:, 0], edges[:, 1])), (n, n)).tocsr()
    adjacency = adjacency + adjacency.T + sp.identity(n, np.float32, format="csr")
    average = sp.diags(1.0 / np.maximum(np.asarray(adjacency.sum(1)).ravel(), 1)) @ adjacency
    for _ in range(COVER_RINGS):
        known = average @ known
    cover = np.clip((known - 0.3) / 0.4, 0.0, 1.0)
    skin = model.part_vertices("face", "head_neck")
    enclosed = np.ones(n, bool)
    enclosed[skin] = False
    cover[enclosed] = 1.0      # eyeballs, sockets: inside the face, drawn wherever it is
    return cover.astype(np.float32)


@dataclass
class Reposed:
    image: np.ndarray          # (S, S, 3) uint8 crop
    target: np.ndarray         # (468, 3) float32, as ``landmark_data.landmark_targets``
    mask: np.ndarray           # (S, S) bool, where the new head covers the crop (flipped with the image)
    flipped: bool
    camera: Camera             # the crop's camera
    cam_vertices: np.ndarray   # (V, 3) cm, the new head in the crop camera (before any flip)
    to_crop: np.ndarray        # (2, 3) affine map photo pixels -> crop pixels


def new_pose(fitted: FittedPhoto, old: np.ndarray, new: np.ndarray, yaw_change: float, pitch_change: float,
             s: DataSettings) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, translation) of the head ``new`` (V, 3) turned by the changes (degrees, kept in
    the settings' pose range) about its centre, put where the centre of the fitted head ``old`` was."""
    yaw, pitch, roll = angles_from_rotation(fitted.rotation)
    rotation = rotation_from_angles(float(np.clip(yaw + yaw_change, -s.yaw, s.yaw)),
                                    float(np.clip(pitch + pitch_change, -s.pitch, s.pitch)), roll)
    centre = fitted.rotation @ old[HEAD_AREA].mean(0) + fitted.translation
    return rotation, centre - rotation @ new[HEAD_AREA].mean(0)


def painted_out(background: np.ndarray, cam_vertices: np.ndarray, camera: Camera, model: HeadModel,
                dilate_px: int) -> np.ndarray:
    """``background`` (S, S, 3) with the face of the head at ``cam_vertices`` (V, 3, this camera's
    frame) inpainted and the fill smoothed, so that it reads as out-of-focus background. Done at
    half size: the fill is smooth anyway, and inpainting costs by the masked area."""
    index, _, triangles = model.export_topology
    face = triangles[model.triangle_part == EXPORTED_PARTS.index("face")]
    half = camera.scaled(0.5)
    mask = render_mesh(cam_vertices[index], face, half).alpha > 0
    radius = max(1, dilate_px // 2)
    mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    small = cv2.resize(background, (half.width, half.height), interpolation=cv2.INTER_AREA)
    filled = cv2.GaussianBlur(cv2.inpaint(small, mask, 3, cv2.INPAINT_TELEA), (0, 0), radius)
    size = (camera.width, camera.height)
    soft = cv2.resize(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, radius / 2)), size)[..., None]
    return (background * (1 - soft) + cv2.resize(filled, size) * soft + 0.5).astype(np.uint8)


def photo_crop(image: np.ndarray, to_crop: np.ndarray, size: int) -> np.ndarray:
    """The photo seen through the crop's affine map (black outside it, as the estimator crops),
    area-averaged first when it shrinks by 2x or more."""
    k = int(max(1, np.floor(1.0 / np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))))
    matrix = to_crop.copy()
    if k > 1:
        image = cv2.resize(image, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
        # pixel p of the reduced image is continuous point k (p + 0.5) of the photo, pixel k (p + 0.5) - 0.5
        matrix[:, 2] += matrix[:, :2] @ np.full(2, 0.5 * (k - 1))
        matrix[:, :2] *= k
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def reposed_sample(fitted: FittedPhoto, image: np.ndarray, model: HeadModel, s: DataSettings,
                   rs: ReposeSettings, rng: np.random.Generator, *, yaw_change: float | None = None,
                   pitch_change: float | None = None, new_identity: bool | None = None,
                   flip: bool | None = None, occlude: bool = True, augment_colour: bool = True,
                   jitter: bool = True) -> Reposed:
    """One re-posed crop of ``fitted``, whose photo is ``image`` (H, W, 3) uint8; the keyword
    arguments fix what is otherwise drawn from ``rng`` (``jitter=False``: the un-jittered crop)."""
    from .landmark_data import landmark_targets
    # every draw is made whether or not it is used, so fixing one leaves the others unchanged
    draws = (rng.uniform(-rs.yaw, rs.yaw), rng.uniform(-rs.pitch, rs.pitch), rng.uniform() < rs.new_identity)
    yaw_change = draws[0] if yaw_change is None else yaw_change
    pitch_change = draws[1] if pitch_change is None else pitch_change
    prior = sample_identity(rng, model)
    old = model.shape(fitted.identity, fitted.expression)
    new = old
    if draws[2] if new_identity is None else new_identity:
        new = old + np.tensordot(prior - fitted.identity, model.identity_basis, 1)
    rotation, translation = new_pose(fitted, old, new, yaw_change, pitch_change, s)
    photo = fitted.camera

    window, level = landmark_window(new @ rotation.T + translation, photo, angles_from_rotation(rotation)[0], s, rng)
    fixed = DataSettings(input_size=s.input_size, scale=(1.0, 1.0), translate=0.0, rotate=0.0)
    camera, roll_z, to_crop = jittered_crop(photo, window, level, s if jitter else fixed, rng)
    size = s.input_size

    old_cam = (old @ (roll_z @ fitted.rotation).T + roll_z @ fitted.translation).astype(np.float32)
    background = painted_out(photo_crop(image, to_crop, size), old_cam, camera, model,
                             max(1, round(rs.inpaint_dilate * size)))
    cam_vertices = (new @ (roll_z @ rotation).T + roll_z @ translation).astype(np.float32)
    index, uv, triangles = model.export_topology
    verts = cam_vertices[index]
    head = render_mesh(verts, triangles, camera, uv=uv, texture=fitted.texture_image(),
                       supersample=s.supersample, weld=index)
    # the photo's part of the head over the background, fading out where the bake's fill begins
    cover = render_mesh(verts, triangles, camera, vertex_colors=np.repeat(fitted.cover[index, None], 3, 1),
                        supersample=s.supersample, weld=index).image[..., :1]
    colour = head.image / np.maximum(head.alpha, 1e-6)[..., None]
    crop = (background * (1 - cover) + 255 * colour * cover + 0.5).astype(np.uint8)
    if occlude and rng.uniform() < s.occluder_prob:
        add_occluder(crop, camera.project(cam_vertices[model.landmarks68[[36, 45]]]), rng)
    flipped = bool(rng.uniform() < s.flip) if flip is None else flip
    mask = cover[..., 0] > 0.5
    if flipped:
        crop, mask = np.ascontiguousarray(crop[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
    if augment_colour:
        crop = colour_augment(crop, rng, s)
    return Reposed(crop, landmark_targets(cam_vertices, camera, flipped), mask, flipped, camera,
                   cam_vertices, to_crop)
