"""Renderer, lighting and visualisation: geometry, texturing, shading and the written files."""
from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from facerecon.camera import Camera, rotation_from_angles
from facerecon.model import load_model
from facerecon.render import lighting
from facerecon.render.renderer import render_batch, render_head, render_mesh
from facerecon.render import visualize
from facerecon.render.visualize import overlay, save_turntable, turntable_frames

from conftest import read_rgb

CAM = Camera(focal=100.0, cx=31.5, cy=31.5, width=64, height=64)
# Square corners in image order top-left, top-right, bottom-right, bottom-left (camera y is down),
# wound so that its normal faces the camera (-z) and it survives back-face culling.
CORNERS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
FRONT = np.array([[0, 2, 1], [0, 3, 2]], np.int32)
QUAD_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)   # v up: the top edge is v = 1


def quad(half: float, depth: float, tilt: float = 0.0) -> np.ndarray:
    """A square of side 2*half cm centred on the optical axis; ``tilt`` adds depth toward the right."""
    xy = CORNERS * half
    return np.column_stack([xy, depth + tilt * xy[:, 0]]).astype(np.float32)


@pytest.fixture(scope="module")
def model(shared):
    return load_model()


@pytest.fixture(scope="module")
def frontal_head(model):
    rotation, translation = rotation_from_angles(0, 0, 0), np.array([0.0, 0.0, 60.0])
    camera = Camera.for_image(160, 160)
    return rotation, translation, camera, render_head(model, model.neutral, rotation, translation,
                                                      camera, sh=lighting.frontal())


def test_flat_quad_depth_and_coverage():
    r = render_mesh(quad(1.0, 10.0), FRONT, CAM)
    # Corners project to 31.5 +- 10: pixel centres 22..41 are inside, 20 x 20 pixels.
    inside = np.zeros((64, 64), bool)
    inside[22:42, 22:42] = True
    np.testing.assert_array_equal(r.alpha > 0, inside)
    assert np.all(r.alpha[inside] == 1.0)
    np.testing.assert_allclose(r.depth[inside], 10.0, rtol=1e-6)
    assert np.all(np.isinf(r.depth[~inside])) and np.all(r.triangle[~inside] == -1)
    np.testing.assert_allclose(r.normals[inside], np.broadcast_to([0, 0, -1], (400, 3)), atol=1e-6)
    assert np.all(r.image[inside] == 1.0) and np.all(r.image[~inside] == 0.0)  # white albedo on black
    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    over_photo = render_mesh(quad(1.0, 10.0), FRONT, CAM, background=photo).image
    np.testing.assert_allclose(over_photo[~inside], photo[~inside] / 255.0, atol=1e-6)
    assert np.all(over_photo[inside] == 1.0)


def test_back_faces_are_culled_unless_asked():
    back = FRONT[:, ::-1]
    assert np.all(render_mesh(quad(1.0, 10.0), back, CAM).triangle == -1)
    r = render_mesh(quad(1.0, 10.0), back, CAM, cull_back=False)
    assert (r.triangle >= 0).sum() == 400
    np.testing.assert_allclose(r.normals[r.triangle >= 0][:, 2], 1.0, atol=1e-6)   # facing away


def test_inputs_that_do_not_fit_the_mesh_are_refused():
    with pytest.raises(ValueError):
        render_mesh(quad(1.0, 10.0), FRONT, CAM, uv=QUAD_UV[:3], texture=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        render_mesh(quad(1.0, 10.0), FRONT + 1, CAM)
    with pytest.raises(ValueError):
        render_mesh(quad(1.0, 10.0), FRONT, CAM, sh=np.zeros((4, 3)))


def test_texture_orientation_v_up_and_row_zero_on_top():
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[:32, :32] = (255, 0, 0)      # top-left of the image file: u < 0.5, v > 0.5
    texture[:32, 32:] = (0, 255, 0)
    texture[32:, :32] = (0, 0, 255)
    texture[32:, 32:] = (255, 255, 255)
    r = render_mesh(quad(1.0, 10.0), FRONT, CAM, uv=QUAD_UV, texture=texture)
    for (y, x), rgb in {(24, 24): (1, 0, 0), (24, 39): (0, 1, 0), (39, 24): (0, 0, 1),
                        (39, 39): (1, 1, 1)}.items():
        np.testing.assert_allclose(r.image[y, x], rgb, atol=1e-6)
    assert r.uv[22, 22, 1] > 0.9 and r.uv[41, 22, 1] < 0.1   # v runs up the image


def test_uv_and_depth_are_perspective_correct():
    half, depth, tilt = 1.0, 10.0, 2.0                        # right edge 4 cm deeper than the left
    verts = quad(half, depth, tilt)
    r = render_mesh(verts, FRONT, CAM, uv=QUAD_UV, texture=np.zeros((4, 4, 3), np.uint8))
    ys, xs = np.nonzero(r.triangle >= 0)
    assert len(ys) > 100
    # Intersect each pixel's ray with the plane z = depth + tilt * x, then read uv off the square.
    rx, ry = (xs - CAM.cx) / CAM.focal, (ys - CAM.cy) / CAM.focal
    z = depth / (1.0 - tilt * rx)
    u, v = (rx * z / half + 1) / 2, 1 - (ry * z / half + 1) / 2
    np.testing.assert_allclose(r.depth[ys, xs], z, rtol=1e-4)
    np.testing.assert_allclose(r.uv[ys, xs], np.column_stack([u, v]), atol=2e-4)


def test_supersampling_gives_fractional_edges_and_the_right_area():
    verts = quad(1.0, 10.0) + np.array([0.05, 0.03, 0.0], np.float32)  # edges between samples
    r = render_mesh(verts, FRONT, CAM, supersample=2, background=(0, 0, 255))
    edge = (r.alpha > 0) & (r.alpha < 1)
    assert edge.sum() >= 4 * 19 and np.all(r.alpha[26:38, 26:38] == 1) and r.alpha[0, 0] == 0
    assert abs(r.alpha.sum() - 20.0 * 20.0) < 0.25 * 4 * 20      # vs. the exact projected area
    # Colour is the coverage-weighted mix of white mesh and the blue background.
    np.testing.assert_allclose(r.image[..., 0], r.alpha, atol=1e-6)
    np.testing.assert_allclose(r.image[..., 2], 1.0, atol=1e-6)


def test_ambient_light_scales_albedo_by_a_constant():
    colors = np.random.default_rng(0).uniform(0, 1, (4, 3)).astype(np.float32)
    unlit = render_mesh(quad(1.0, 10.0), FRONT, CAM, vertex_colors=colors)
    lit = render_mesh(quad(1.0, 10.0), FRONT, CAM, vertex_colors=colors, sh=lighting.ambient(0.6))
    assert unlit.image.std() > 0.05
    np.testing.assert_allclose(lit.image, 0.6 * unlit.image, atol=1e-5)


def test_directional_and_random_lighting_are_plausible():
    d = np.array([0.3, -0.5, -0.8])
    d /= np.linalg.norm(d)
    sh = lighting.directional(d, 0.8)
    assert abs(lighting.irradiance(d, sh)[0] - 0.8) < 0.07           # facing the light: ~intensity
    assert np.all(lighting.irradiance(-d, sh) < 0.05)                  # facing away: ~dark
    toward_camera = np.array([0.0, 0.0, -1.0])
    for seed in range(20):
        e = lighting.irradiance(toward_camera, lighting.random_lighting(np.random.default_rng(seed)))
        assert np.all((e > 0.3) & (e < 1.6))


def test_head_normals_face_the_camera_and_shading_matches_sh(model, frontal_head):
    rotation, translation, camera, r = frontal_head
    nose = model.neutral[int(np.argmax(model.neutral[: 9409, 2]))]       # the face's frontmost point
    nose_cam = rotation @ nose + translation
    x, y = np.round(camera.project(nose_cam[None])[0]).astype(int)
    assert r.normals[y, x, 2] < -0.9
    assert abs(r.depth[y, x] - nose_cam[2]) < 0.3
    covered = r.triangle >= 0
    np.testing.assert_allclose(np.linalg.norm(r.normals[covered], axis=1), 1.0, atol=1e-4)
    assert np.mean(r.normals[covered][:, 2] < 0) > 0.99                 # culling left front faces only
    # The per-pixel numba shading is the numpy SH formula applied to the normal map (white albedo).
    expected = np.clip(lighting.irradiance(r.normals[covered], lighting.frontal()), 0, 1)
    np.testing.assert_allclose(r.image[covered], expected, atol=1e-4)


def test_batch_matches_single_renders(model):
    index, uv, triangles = model.export_topology
    camera = Camera.for_image(96, 96)
    rng = np.random.default_rng(1)
    verts = np.stack([model.neutral[index] @ rotation_from_angles(yaw, 5, 0).T + [0, 0, 70]
                      for yaw in (-30, 0, 30)]).astype(np.float32)
    texture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    sh = np.stack([lighting.random_lighting(rng) for _ in range(3)])
    batch = render_batch(verts, triangles, camera, uv=uv, texture=texture, sh=sh, supersample=2,
                         weld=index, background=(0.2, 0.3, 0.4))
    assert batch.image.shape == (3, 96, 96, 3)
    for b in range(3):
        single = render_mesh(verts[b], triangles, camera, uv=uv, texture=texture, sh=sh[b],
                             supersample=2, weld=index, background=(0.2, 0.3, 0.4))
        np.testing.assert_allclose(batch.image[b], single.image, atol=1e-6)
        np.testing.assert_array_equal(batch.triangle[b], single.triangle)
    assert np.abs(batch.image[0] - batch.image[2]).mean() > 0.01


def test_overlay_changes_pixels_only_around_each_face(model, shared):
    photo = read_rgb(shared / "eval" / "photos" / "3ddfa_v2" / "trump_hillary.jpg")
    camera = Camera.for_image(photo.shape[1], photo.shape[0])
    meshes = [model.neutral @ rotation_from_angles(yaw, 0, 0).T + [x, 5, 150]
              for yaw, x in ((20, -25), (-20, 25))]
    dots = [camera.project(m[model.landmarks68]) for m in meshes]
    out = overlay(photo, meshes, camera, model, landmarks=dots)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = np.any(out != photo, axis=2)
    near = np.zeros_like(changed)
    for m in meshes:
        xy = camera.project(m[model.used_vertices])
        (x0, y0), (x1, y1) = np.floor(xy.min(0)).astype(int) - 3, np.ceil(xy.max(0)).astype(int) + 3
        near[max(y0, 0):y1, max(x0, 0):x1] = True
        inner = changed[int(xy[:, 1].mean()) - 5:int(xy[:, 1].mean()) + 5,
                        int(xy[:, 0].mean()) - 5:int(xy[:, 0].mean()) + 5]
        assert inner.mean() > 0.9                                      # each face is drawn
    assert not np.any(changed & ~near)
    x, y = np.round(dots[0][30]).astype(int)                            # nose-tip landmark dot
    assert out[y, x, 1] > 200 and out[y, x, 0] < 120
    with pytest.raises(ValueError):
        overlay(photo, meshes, camera.scaled(0.5), model)


def test_overlay_renders_apart_heads_in_their_own_boxes():
    """Heads whose boxes overlap (directly or through a third) share one render and z-buffer;
    heads apart get a box each; a head out of view (None) none."""
    boxes = [(0, 0, 10, 10), (50, 50, 60, 60), (8, 8, 20, 20), None, (19, 0, 30, 9), (100, 0, 110, 5)]
    assert sorted(visualize._overlapping_groups(boxes)) == [[0, 2, 4], [1], [5]]
    assert visualize._overlapping_groups([None]) == []


def test_turntable_frames_mirror_and_files_are_written_atomically(model, tmp_path):
    frames = turntable_frames(model, model.neutral, None, size=96, n_frames=6)
    assert len(frames) == 6 and all(f.shape == (96, 96, 3) and f.dtype == np.uint8 for f in frames)
    background = frames[0][0, 0].astype(int)
    masks = [np.any(np.abs(f.astype(int) - background) > 3, axis=2) for f in frames]
    first, last = masks[0], masks[-1]
    assert np.any(first != last)
    iou = (first & last[:, ::-1]).sum() / (first | last[:, ::-1]).sum()
    assert iou > 0.9                                   # the two profiles mirror each other
    for m in masks:                                    # framed: the head never touches the border
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())

    gif, mp4 = tmp_path / "turn.gif", tmp_path / "turn.mp4"
    save_turntable(frames, gif_path=gif, mp4_path=mp4, fps=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turn.gif", "turn.mp4"]
    for path in (gif, mp4):
        back = imageio.mimread(path)
        assert len(back) == 6 and back[0].shape[:2] == (96, 96)
        assert np.abs(np.asarray(back[2])[..., :3].astype(int) - frames[2]).mean() < 8

    mp4.write_bytes(b"previous")
    with pytest.raises(ValueError):
        save_turntable([frames[0], frames[1][:48]], mp4_path=mp4)
    assert mp4.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turn.gif", "turn.mp4"]
