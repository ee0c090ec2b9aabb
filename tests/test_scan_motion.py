"""A moving subject in a scan video: a synthetic clip (a textured board before a textured wall and floor, the
camera walking an arc around it) whose board holds still, moves throughout, or holds still for the
first half only. The figures on the real pet clips are in docs/scan.md."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facerecon.cli import app
from facerecon.errors import ScanInputError
from facerecon.scan.cameras import CameraSet, ViewCamera
from facerecon.scan.motion import MIN_STILL_VIEWS, keyframe_motion, still_stretch
from facerecon.scan.views import Views

WIDTH, HEIGHT, FOCAL, FRAMES = 320, 240, 300.0, 24
K = np.array([[FOCAL, 0, (WIDTH - 1) / 2], [0, FOCAL, (HEIGHT - 1) / 2], [0, 0, 1]])


def _texture(seed: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = sum(cv2.resize(rng.uniform(0, 255, (n, n, 3)).astype(np.float32), (size, size),
                             interpolation=cv2.INTER_CUBIC) / 3 for n in (8, 24, 64))
    return np.clip(texture, 0, 255).astype(np.uint8)


def _camera(angle_deg: float) -> ViewCamera:
    """On an arc of radius 6 about the board (at the origin), looking at it; world y down."""
    a = np.radians(angle_deg)
    centre = np.array([6 * np.sin(a), -0.5, -6 * np.cos(a)])
    forward = -centre / np.linalg.norm(centre)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    return ViewCamera(K, R, -R @ centre, WIDTH, HEIGHT)


def _draw_plane(image: np.ndarray, texture: np.ndarray, camera: ViewCamera, origin: np.ndarray, side: float,
                axes: tuple[int, int] = (0, 1)) -> None:
    """A square of ``side`` world units spanned by two world axes from corner ``origin``, textured,
    drawn over ``image``."""
    to_plane = np.array([[side / texture.shape[1], 0, 0], [0, side / texture.shape[0], 0], [0, 0, 1]])
    plane_to_image = K @ np.column_stack([camera.R[:, axes[0]], camera.R[:, axes[1]], camera.R @ origin + camera.t])
    H = plane_to_image @ to_plane
    warped = cv2.warpPerspective(texture, H, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full(texture.shape[:2], 255, np.uint8), H, (WIDTH, HEIGHT)) > 127
    image[mask] = warped[mask]


def clip(board_moves: list[bool], step: float = 0.1) -> tuple[list[np.ndarray], list[ViewCamera], np.ndarray]:
    """Frames, cameras and the scene's corner points; the board jumps ``step`` units sideways and up
    and back (5 px at 0.1) between frames where ``board_moves`` says so, staying in view."""
    wall, floor, board = _texture(1, 512), _texture(3, 512), _texture(2)
    frames, cameras, offset = [], [], np.zeros(3)
    for k, angle in enumerate(np.linspace(-25, 25, len(board_moves))):
        if board_moves[k]:
            offset = np.array([step, step, 0.0]) - offset
        camera = _camera(angle)
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        _draw_plane(image, wall, camera, np.array([-8.0, -8.0, 4.0]), 16.0)
        # a floor too: two parallel planes alone leave structure from motion's focal length free
        _draw_plane(image, floor, camera, np.array([-5.0, 1.5, -2.0]), 6.0, axes=(0, 2))
        _draw_plane(image, board, camera, np.array([-1.0, -1.0, 0.0]) + offset, 2.0)
        frames.append(image)
        cameras.append(camera)
    points = np.array([[x, y, z] for x in (-3, 3) for y in (-3, 3) for z in (0.0, 4.0)])
    return frames, cameras, points


def _scan_input(board_moves: list[bool]) -> tuple[Views, CameraSet]:
    frames, cameras, points = clip(board_moves)
    views = Views(frames, [f"frame_{k:06d}" for k in range(len(frames))], [1.0] * len(frames), "video")
    return views, CameraSet(cameras, points, "known", list(range(len(frames))))


def test_a_still_board_is_kept_whole():
    views, cameras = _scan_input([False] * FRAMES)
    motions = keyframe_motion(views, cameras)
    assert max(m.moving_share for m in motions) < 0.005, [round(m.moving_share, 3) for m in motions]
    assert still_stretch(views, cameras) is cameras


def test_a_moving_board_is_refused():
    views, cameras = _scan_input([True] * FRAMES)
    motions = keyframe_motion(views, cameras)
    assert all(m.moves for m in motions), [round(m.moving_share, 3) for m in motions]
    with pytest.raises(ScanInputError, match="^the subject moves: 23 of 23 keyframe pairs"):
        still_stretch(views, cameras)


def test_the_still_half_is_scanned_alone():
    still = FRAMES // 2
    views, cameras = _scan_input([False] * still + [True] * (FRAMES - still))
    lines = []
    kept = still_stretch(views, cameras, lines.append)
    assert kept.keep == list(range(still)) and len(kept.cameras) == still >= MIN_STILL_VIEWS
    assert lines and "scanning the still stretch frame_000000 .. frame_000011" in lines[0]


def test_the_cli_refuses_a_moving_clip_and_writes_nothing(tmp_path):
    """Through structure from motion: the clip as an MP4, the board jumping 10 px throughout."""
    pytest.importorskip("pycolmap")
    import imageio.v2 as imageio
    frames, _, _ = clip([True] * FRAMES, step=0.2)
    video = tmp_path / "walk.mp4"
    imageio.mimwrite(video, frames, fps=10, macro_block_size=16, quality=9)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["scan", str(video), "-o", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines[-1].startswith("error: the subject moves: "), result.output
    assert not out.exists()
