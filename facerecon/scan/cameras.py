"""The views' cameras: read from a known-camera file beside the photos, or found by structure from
motion (pycolmap, the [scan] extra), with the sparse points that bound the dense stage's depths.

Known-camera files: Middlebury's ``*_par.txt`` (``name k11..k33 r11..r33 t1 t2 t3``, P = K [R t])
and instant-ngp / NeRF's ``transforms.json`` (camera-to-world in OpenGL axes, one intrinsic set with
OpenCV distortion k1 k2 p1 p2). The world's units are the file's; structure from motion's are
arbitrary (``facerecon.scan.scale`` makes them metric where it can).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import ScanInputError, require
from .views import MIN_VIEWS, Views

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class ViewCamera:
    """A pinhole camera, OpenCV axes (x right, y down, z forward): x_cam = R @ x_world + t."""

    K: np.ndarray      # (3, 3) intrinsics, pixels (pixel centres at integers)
    R: np.ndarray      # (3, 3) world -> camera rotation
    t: np.ndarray      # (3,) world -> camera translation, world units
    width: int
    height: int

    @property
    def centre(self) -> np.ndarray:
        """(3,) the camera centre in the world."""
        return -self.R.T @ self.t

    @property
    def axis(self) -> np.ndarray:
        """(3,) the viewing direction (camera +z) in the world."""
        return self.R[2]

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-frame points."""
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixels and (N,) depths along the camera axis."""
        cam = self.to_camera(points)
        z = cam[:, 2]
        uv = cam @ self.K.T
        return uv[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None], z

    def scaled(self, factor: float) -> ViewCamera:
        """The same camera for the image resized by ``factor``."""
        S = np.diag([factor, factor, 1.0])
        shift = np.array([[0, 0, 0.5 * factor - 0.5], [0, 0, 0.5 * factor - 0.5], [0, 0, 0]])
        K = S @ self.K + shift
        return replace(self, K=K, width=round(self.width * factor), height=round(self.height * factor))


@dataclass
class CameraSet:
    """Cameras for the views, and where they came from."""

    cameras: list[ViewCamera]
    points: np.ndarray                 # (P, 3) sparse world points (bound the depths), may be empty
    source: str                        # "known: FILE" or "structure from motion"
    keep: list[int]                    # the indices of the views these cameras belong to (registered ones)
    reprojection_px: float | None = None


# ---- known cameras ----------------------------------------------------------------------------------

@dataclass
class KnownCameras:
    """A known-camera file's content, at the images' original resolution."""

    files: list[Path]
    cameras: list[ViewCamera]
    distortion: np.ndarray | None      # (4,) OpenCV k1 k2 p1 p2, shared by all views, or None
    path: Path


def find_known_cameras(folder: Path) -> KnownCameras | None:
    """The known-camera file in ``folder``, if there is one."""
    if (folder / "transforms.json").is_file():
        return _read_transforms(folder / "transforms.json")
    pars = sorted(folder.glob("*_par.txt"))
    if pars:
        return _read_middlebury(pars[0])
    return None


def _read_middlebury(path: Path) -> KnownCameras:
    lines = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    files, cameras = [], []
    for fields in lines:
        values = np.array(fields[1:22], float)
        image = path.parent / fields[0]
        height, width = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
        files.append(image)
        cameras.append(ViewCamera(values[:9].reshape(3, 3), values[9:18].reshape(3, 3), values[18:21], width, height))
    return KnownCameras(files, cameras, None, path)


def _read_transforms(path: Path) -> KnownCameras:
    data = json.loads(path.read_text())
    width, height = int(data["w"]), int(data["h"])
    K = np.array([[data["fl_x"], 0, data["cx"]], [0, data.get("fl_y", data["fl_x"]), data["cy"]], [0, 0, 1]], float)
    # instant-ngp's principal point is in pixel-edge coordinates (0 .. w); ours has centres at integers
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    distortion = np.array([data.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")], float)
    files, cameras = [], []
    for frame in sorted(data["frames"], key=lambda f: f["file_path"]):
        if not (path.parent / frame["file_path"]).is_file():   # a subset of the frames may ship
            continue
        c2w = np.array(frame["transform_matrix"], float)
        rotation = (c2w[:3, :3] @ OPENGL_TO_OPENCV).T
        files.append(path.parent / frame["file_path"])
        cameras.append(ViewCamera(K, rotation, -rotation @ c2w[:3, 3], width, height))
    return KnownCameras(files, cameras, distortion if np.any(distortion) else None, path)


def apply_known(known: KnownCameras, views: Views) -> CameraSet:
    """The known cameras at the views' resolution; undistorts the views in place where needed."""
    cameras = []
    for i, (camera, scale) in enumerate(zip(known.cameras, views.scales)):
        camera = camera.scaled(scale)
        if known.distortion is not None:
            views.images[i] = cv2.undistort(views.images[i], camera.K, known.distortion)
        cameras.append(camera)
    points = triangulate_matches(views, cameras)
    return CameraSet(cameras, points, f"known: {known.path.name}", list(range(len(views))))


def view_pairs(cameras: list[ViewCamera], per_view: int, min_deg: float = 3.0, max_deg: float = 45.0,
               centre: np.ndarray | None = None) -> list[list[int]]:
    """For each view, up to ``per_view`` neighbours that see the scene's centre from between
    ``min_deg`` and ``max_deg`` away, the closest angles first (enough baseline, enough overlap)."""
    centre = look_at_point(cameras) if centre is None else centre
    rays = np.array([c.centre - centre for c in cameras])
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(rays @ rays.T, -1, 1)))
    pairs = []
    for i in range(len(cameras)):
        order = [j for j in np.argsort(angles[i]) if j != i and min_deg <= angles[i, j] <= max_deg]
        pairs.append([int(j) for j in order[:per_view]])
    return pairs


def look_at_point(cameras: list[ViewCamera]) -> np.ndarray:
    """(3,) the point closest (least squares) to all the cameras' optical axes: what they look at."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for camera in cameras:
        d = camera.axis / np.linalg.norm(camera.axis)
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ camera.centre
    return np.linalg.lstsq(A, b, rcond=None)[0]


def triangulate_matches(views: Views, cameras: list[ViewCamera], per_view: int = 2,
                        max_error_px: float = 2.0) -> np.ndarray:
    """(P, 3) world points from SIFT matches between neighbouring views with known cameras."""
    sift = cv2.SIFT_create(nfeatures=4000)
    features = [sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None) for im in views.images]
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    points = []
    for i, neighbours in enumerate(view_pairs(cameras, per_view)):
        for j in neighbours:
            (ki, di), (kj, dj) = features[i], features[j]
            if di is None or dj is None or len(ki) < 8 or len(kj) < 8:
                continue
            good = [m for m, n in matcher.knnMatch(di, dj, k=2) if m.distance < 0.8 * n.distance]
            if len(good) < 8:
                continue
            xi = np.float64([ki[m.queryIdx].pt for m in good])
            xj = np.float64([kj[m.trainIdx].pt for m in good])
            Pi = cameras[i].K @ np.hstack([cameras[i].R, cameras[i].t[:, None]])
            Pj = cameras[j].K @ np.hstack([cameras[j].R, cameras[j].t[:, None]])
            X = cv2.triangulatePoints(Pi, Pj, xi.T, xj.T)
            X = (X[:3] / X[3]).T
            ok = np.ones(len(X), bool)
            for camera, x in ((cameras[i], xi), (cameras[j], xj)):
                uv, z = camera.project(X)
                ok &= (z > 0) & (np.linalg.norm(uv - x, axis=1) < max_error_px)
            points.append(X[ok])
    return np.concatenate(points) if points else np.zeros((0, 3))


# ---- structure from motion ------------------------------------------------------------------------

# SIFT features per photo when every pair of photos is matched (COLMAP's default: 8192). On the fox's
# 50 frames at 960 px, 2048 registered all 50 as well (camera centres 0.30 % of their spread from the
# shipped ones, against 0.31 %) with matching 35 s instead of 60 and mapping 18 s instead of 24.
EXHAUSTIVE_MAX_FEATURES = 2048

def structure_from_motion(views: Views, log=lambda line: None) -> CameraSet:
    """Cameras and sparse points by pycolmap's incremental mapper; undistorts the views in place.

    Videos are matched sequentially, photos exhaustively. Raises ScanInputError when fewer than
    three views register (the views do not overlap, or show too little texture)."""
    pycolmap = require("pycolmap", "scan", "structure from motion (views without known cameras)")
    pycolmap.logging.minloglevel = 3   # COLMAP's log would bury the stage lines and the one error line
    with tempfile.TemporaryDirectory(prefix="facerecon-sfm-") as work:
        work = Path(work)
        (work / "images").mkdir()
        names = [f"{i:04d}.jpg" for i in range(len(views))]
        for name, image in zip(names, views.images):
            cv2.imwrite(str(work / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        database = work / "database.db"
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "SIMPLE_RADIAL"
        same_size = len({im.shape for im in views.images}) == 1
        mode = pycolmap.CameraMode.SINGLE if same_size else pycolmap.CameraMode.PER_IMAGE
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = max(max(im.shape[:2]) for im in views.images)
        if views.source != "video":
            # every pair is matched, at a cost that grows with the features squared (docs/scan.md)
            extraction.sift.max_num_features = EXHAUSTIVE_MAX_FEATURES
        log("structure from motion: features")
        pycolmap.extract_features(database, work / "images", camera_mode=mode, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        log("structure from motion: matching")
        if views.source == "video":
            pycolmap.match_sequential(database, device=pycolmap.Device.cpu)
        else:
            pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
        log("structure from motion: mapping")
        (work / "sparse").mkdir()
        options = pycolmap.IncrementalPipelineOptions()
        maps = pycolmap.incremental_mapping(database, work / "images", work / "sparse", options)
    if not maps:
        raise ScanInputError(f"structure from motion registered none of the {len(views)} views: they do not "
                             "overlap, or show too little texture to match")
    best = max(maps.values(), key=lambda r: r.num_reg_images())
    if best.num_reg_images() < MIN_VIEWS:
        raise ScanInputError(f"structure from motion registered {best.num_reg_images()} of {len(views)} views "
                             f"(at least {MIN_VIEWS} needed): the views do not overlap enough")
    by_name = {image.name: image for image in best.images.values() if image.has_pose}
    cameras, keep = [], []
    for i, name in enumerate(names):
        image = by_name.get(name)
        if image is None:
            continue
        camera = best.cameras[image.camera_id]
        f, cx, cy, k = camera.params[:4]
        K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        views.images[i] = cv2.undistort(views.images[i], K, np.array([k, 0, 0, 0]))
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        cameras.append(ViewCamera(K, np.array(pose.rotation.matrix()), np.array(pose.translation),
                                  camera.width, camera.height))
        keep.append(i)
    points = np.array([p.xyz for p in best.points3D.values()]).reshape(-1, 3)
    return CameraSet(cameras, points, "structure from motion", keep, float(best.compute_mean_reprojection_error()))
