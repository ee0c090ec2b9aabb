"""``facerecon video``: the main (largest) face of every frame, one identity for the whole clip.

1. Every frame: detect, take the largest face, place its landmarks (the Reconstructor's method:
   a landmark method, fit or dense; the default tracks with fit) and fit freely.
2. The clip's identity: the median identity of the best frames (near-frontal, lowest residual).
3. Every frame again with that identity held fixed: only pose and expression are solved, so the
   head keeps its shape and the per-frame noise goes into fewer unknowns.
4. Pose and expression smoothed over time (One Euro), unless ``smoothing="none"``.
Outputs: per-frame pose and ARKit weights as CSV and JSON, an overlay MP4, and ``head.glb``: the
clip's head (metres) textured from its most frontal identity frame, with the expression shapes as
morph targets and a glTF animation of their weights and the head's pose, one key per frame; with
``turntable``, that head turning (``head_turntable.gif`` and ``.mp4``).
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imageio.v2 as imageio
import numpy as np

from .. import methods
from ..blendshapes import arkit_weights
from ..camera import Camera
from ..errors import InputImageError, NoFaceError
from ..export import atomic_path, encode_image, write_bytes, write_json
from ..fit import FitResult
from ..gltf import Animation, Rig, head_glb
from ..pipeline import Reconstructor
from ..texture import bake_texture
from .smoothing import EXPRESSION_FILTER, TRANSLATION_FILTER, smooth_rotations

Smoothing = Literal["one-euro", "none"]
FRONTAL_DEG = 20.0          # frames within this yaw and pitch are preferred for the identity
IDENTITY_SHARE = 0.5        # of those, the share with the lowest residual whose median is taken


@dataclass
class VideoTrack:
    fps: float
    camera: Camera
    times: np.ndarray                       # (T,) seconds
    fits: list[FitResult | None]            # final per-frame fits (None: no face in the frame)
    identity: np.ndarray                    # (n_identity,) the clip's one identity
    identity_frames: list[int]              # the frames it came from
    jitter_mm: dict[str, float]             # mean frame-to-frame vertex motion, per fitting stage


def _largest(boxes: list) -> int:
    return int(np.argmax([(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in boxes]))


def track_video(path: Path, run: Reconstructor, smoothing: Smoothing = "one-euro",
                max_frames: int | None = None) -> VideoTrack:
    """Track the clip's main face; a clip over ``max_frames`` frames is refused (InputImageError).
    ``run``'s method must be a landmark method (``methods.names(fits_landmarks=True)``; the default
    method tracks with ``methods.DEFAULT_VIDEO_METHOD``), else ValueError."""
    name = methods.DEFAULT_VIDEO_METHOD if run.method == methods.DEFAULT_METHOD else run.method
    if name not in methods.names(fits_landmarks=True):
        raise ValueError(f"video tracking needs a landmark method ({', '.join(methods.names(fits_landmarks=True))}), "
                         f"not {run.method!r}")
    method = run.get_method(name)
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as exc:
        raise InputImageError(f"{path}: not a readable video ({type(exc).__name__})") from None
    fps = float(reader.get_meta_data().get("fps") or 30.0)
    landmarks: list[np.ndarray | None] = []
    camera = None
    with reader:
        for frame in reader:
            if max_frames is not None and len(landmarks) >= max_frames:
                raise InputImageError(f"{path}: the clip is over {max_frames} frames")
            camera = camera or run.camera_for(frame)
            found = run.detect(frame).faces
            marks = method.place(frame, found[_largest(found)], camera) if found else None
            landmarks.append(None if marks is None else marks.points)
    seen = [i for i, m in enumerate(landmarks) if m is not None]
    if not seen:
        raise NoFaceError(f"{path}: no face in any of its {len(landmarks)} frames")
    times = np.arange(len(landmarks)) / fps

    free = {i: method.fitter.fit(landmarks[i], camera) for i in seen}
    identity, identity_frames = shared_identity(free)
    fixed = {i: method.fitter.fit(landmarks[i], camera, identity=identity) for i in seen}
    final = smooth_fits(fixed, times) if smoothing == "one-euro" else fixed
    jitter = {"free_identity": jitter_mm(run, free), "shared_identity": jitter_mm(run, fixed),
              "smoothed": jitter_mm(run, final)}
    fits = [final.get(i) for i in range(len(landmarks))]
    return VideoTrack(fps, camera, times, fits, identity, identity_frames, jitter)


def shared_identity(fits: dict[int, FitResult]) -> tuple[np.ndarray, list[int]]:
    """The median identity over the near-frontal frames with the lowest residual."""
    frames = [i for i, f in fits.items() if abs(f.angles[0]) < FRONTAL_DEG and abs(f.angles[1]) < FRONTAL_DEG]
    frames = sorted(frames or list(fits), key=lambda i: fits[i].residual)
    best = sorted(frames[:max(1, round(len(frames) * IDENTITY_SHARE))])
    return np.median([fits[i].identity for i in best], axis=0).astype(np.float32), best


def smooth_fits(fits: dict[int, FitResult], times: np.ndarray) -> dict[int, FitResult]:
    """Pose and expression of the frames with a face, filtered over their times (a gap is a long step)."""
    frames = sorted(fits)
    t = times[frames]
    rotations = smooth_rotations(np.stack([fits[i].rotation for i in frames]), t)
    translations = TRANSLATION_FILTER(np.stack([fits[i].translation for i in frames]), t)
    expressions = np.clip(EXPRESSION_FILTER(np.stack([fits[i].expression for i in frames]), t), 0, 1)
    return {i: dataclasses.replace(fits[i], rotation=r, translation=tr, expression=e.astype(np.float32))
            for i, r, tr, e in zip(frames, rotations, translations, expressions)}


def jitter_mm(run: Reconstructor, fits: dict[int, FitResult]) -> float:
    """Mean motion of the head's vertices (camera frame) between consecutive frames, in mm."""
    frames = sorted(fits)
    used = run.model.used_vertices
    steps, previous = [], None
    for i in frames:
        verts = fits[i].to_camera(run.model.shape(fits[i].identity, fits[i].expression, used))
        if previous is not None:
            steps.append(np.linalg.norm(verts - previous, axis=1).mean() * 10.0)
        previous = verts
    return float(np.mean(steps)) if steps else 0.0


def frame_rows(track: VideoTrack, run: Reconstructor) -> list[dict]:
    """One JSON-ready dict per frame."""
    rows = []
    for i, (t, fit) in enumerate(zip(track.times, track.fits)):
        row: dict = {"frame": i, "time_s": round(float(t), 4), "face": fit is not None}
        if fit is not None:
            yaw, pitch, roll = fit.angles
            row.update(yaw_deg=round(yaw, 3), pitch_deg=round(pitch, 3), roll_deg=round(roll, 3),
                       translation_cm=fit.translation.round(4), model_to_camera=fit.pose_matrix.round(6),
                       residual_px=round(fit.residual_px, 3),
                       blendshapes_arkit=arkit_weights(run.model.expression_names, fit.expression))
        rows.append(row)
    return rows


def write_outputs(track: VideoTrack, run: Reconstructor, source: Path, out_dir: Path,
                  overlay: bool = True, glb: bool = True, label: str | None = None,
                  turntable: bool = False) -> dict[str, Path]:
    """``label``: the clip's name in the outputs (default: its path)."""
    label = label or str(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = frame_rows(track, run)
    names = list(arkit_weights(run.model.expression_names, np.zeros(run.model.n_expression)))
    pose = ["yaw_deg", "pitch_deg", "roll_deg", "tx_cm", "ty_cm", "tz_cm", "residual_px"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["frame", "time_s", "face", *pose, *names])
    for row in rows:
        values = [""] * (len(pose) + len(names))   # empty cells: no face in the frame
        if row["face"]:
            values = [row["yaw_deg"], row["pitch_deg"], row["roll_deg"], *row["translation_cm"].tolist(),
                      row["residual_px"], *(row["blendshapes_arkit"][n] for n in names)]
        writer.writerow([row["frame"], row["time_s"], int(row["face"]), *values])
    paths = {"csv": write_bytes(out_dir / "frames.csv", text.getvalue().encode()),
             "json": write_json(out_dir / "frames.json", {
                 "source": label, "fps": track.fps, "frames": len(rows),
                 "camera": {"focal_px": track.camera.focal, "cx": track.camera.cx, "cy": track.camera.cy,
                            "width": track.camera.width, "height": track.camera.height},
                 "identity": track.identity.round(5), "identity_frames": track.identity_frames,
                 "jitter_mm": {k: round(v, 4) for k, v in track.jitter_mm.items()},
                 "units": "cm",
                 **({"glb": {"file": "head.glb", "units": "m", "texture_frame": texture_frame(track),
                             "morph_targets": run.model.n_expression,
                             "animation": "morph weights and head-node pose at every frame with a face, linear "
                                          "between; the camera node at the origin is the video's camera",
                             "gaze": "not estimated: the eyeball nodes stay at rest"}} if glb else {}),
                 "per_frame": rows})}
    texture = clip_texture(track, run, source) if glb or turntable else None
    if glb:
        paths["glb"] = write_animated_glb(track, run, texture, out_dir / "head.glb", Path(label).name)
    if turntable:
        from ..render.visualize import save_turntable, turntable_frames
        fit = track.fits[texture_frame(track)]
        paths["turntable_gif"], paths["turntable_mp4"] = out_dir / "head_turntable.gif", out_dir / "head_turntable.mp4"
        save_turntable(turntable_frames(run.model, fit.vertices(run.model), texture), paths["turntable_gif"],
                       paths["turntable_mp4"])
    if overlay:
        paths["overlay"] = write_overlay_video(track, run, source, out_dir / "overlay.mp4")
    return paths


def texture_frame(track: VideoTrack) -> int:
    """The most frontal of the frames that gave the identity: the animated head's texture."""
    return min(track.identity_frames, key=lambda i: abs(track.fits[i].angles[0]) + abs(track.fits[i].angles[1]))


def clip_texture(track: VideoTrack, run: Reconstructor, source: Path) -> np.ndarray:
    """The head's texture (S, S, 3) uint8, baked from the clip's :func:`texture_frame`."""
    best = texture_frame(track)
    with imageio.get_reader(source, format="FFMPEG") as reader:
        image = next(frame for i, frame in enumerate(reader) if i == best)
    fit = track.fits[best]
    return bake_texture(image, fit.to_camera(fit.vertices(run.model)), track.camera, run.model, run.texture_size).image


def write_animated_glb(track: VideoTrack, run: Reconstructor, texture: np.ndarray, path: Path,
                       name: str) -> Path:
    """The clip's head with its animation (the GLB's units are metres, its axes glTF's)."""
    frames = [i for i, fit in enumerate(track.fits) if fit is not None]
    first = track.fits[frames[0]]
    rig = Rig(track.identity, first.expression, first.pose_matrix, track.camera)
    animation = Animation(track.times[frames], np.stack([track.fits[i].expression for i in frames]),
                          np.stack([track.fits[i].pose_matrix for i in frames]), name=f"facerecon {name}")
    return write_bytes(path, head_glb(run.model, first.vertices(run.model), encode_image(texture), rig, animation))


def write_overlay_video(track: VideoTrack, run: Reconstructor, source: Path, path: Path) -> Path:
    """The clip with each frame's head drawn over it (the frames are read again, not kept)."""
    from ..render.visualize import overlay
    with atomic_path(path) as temporary:
        writer = imageio.get_writer(temporary, format="FFMPEG", fps=track.fps, codec="libx264", quality=7,
                                    pixelformat="yuv420p", macro_block_size=2)
        try:
            with imageio.get_reader(source, format="FFMPEG") as reader:
                for frame, fit in zip(reader, track.fits):
                    meshes = [] if fit is None else [fit.to_camera(fit.vertices(run.model))]
                    writer.append_data(overlay(frame, meshes, track.camera, run.model))
        finally:
            # ffmpeg must be finished before the rename; the context manager would leave it running on an error.
            writer.close()
    return path
