"""Re-posed real photos (training/repose.py): the fit's cache, exact targets on the drawn head, the
painted-out face, flips and determinism. Two HELEN training photos, fitted once per module."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import write_training_config
from facerecon.training.data import DataSettings
from facerecon.training.landmark_data import LandmarkFaces
from facerecon.training.repose import ReposeSettings, fit_photos, painted_out, photo_crop

SIZE = 192
PHOTOS = ("100032540_1", "1004467229_1")


@pytest.fixture(scope="module")
def fitted(eval_dir, tmp_path_factory):
    from conftest import require_data
    helen = require_data(eval_dir / "300w-helen-afw" / "helen_train", "HELEN training faces")
    folder = tmp_path_factory.mktemp("photos") / "helen_train"
    folder.mkdir()
    for stem in PHOTOS:
        for suffix in (".jpg", ".pts"):
            (folder / (stem + suffix)).symlink_to(helen / (stem + suffix))
    cache = tmp_path_factory.mktemp("cache")
    settings = ReposeSettings(every=2, texture_size=256)
    return folder, cache, settings, fit_photos([folder], cache, settings)


@pytest.fixture(scope="module")
def faces(fitted):
    _, _, settings, fits = fitted
    data = DataSettings(input_size=SIZE, framing="landmarks", pitch=90.0, rotate=8.0, translate=0.04)
    return LandmarkFaces(np.full((1, 64, 64, 3), 170, np.uint8), data, seed=5, reposed=fits, repose=settings)


def plain(faces, index, **kwargs):
    return faces.reposed_sample(index, occlude=False, augment_colour=False, **kwargs)


def test_fits_are_cached(fitted, monkeypatch):
    folder, cache, settings, fits = fitted
    assert len(fits) == len(PHOTOS)
    for fit in fits:
        assert fit.identity.shape == (40,) and fit.expression.shape == (53,) and fit.rotation.shape == (3, 3)
        assert fit.texture_image().shape == (256, 256, 3) and fit.texture_image().dtype == np.uint8
        assert fit.cover.dtype == np.float32 and 0 <= fit.cover.min() and fit.cover.max() <= 1
        # the face the photo shows is the photo's, the back of the head is not
        assert fit.cover[:3000].mean() > 0.9 and fit.cover.mean() < 0.9
    import facerecon.pipeline
    monkeypatch.setattr(facerecon.pipeline, "Reconstructor", None)   # a second call must not fit again
    again = fit_photos([folder], cache, settings)
    assert all(np.array_equal(a.identity, b.identity) and a.texture == b.texture for a, b in zip(fits, again))


def test_the_unchanged_pose_reproduces_the_fit_and_the_photo(faces):
    from facerecon.geometry import surface_points
    from facerecon.landmarks import dense_surface_points
    from facerecon.load import load_image
    vertices, bary = dense_surface_points()   # what the targets are: the dense network's surface points
    for index, fit in enumerate(faces.reposed):
        faces_one = LandmarkFaces(faces.textures, faces.settings, 0, reposed=[fit], repose=faces.repose)
        r = plain(faces_one, index, yaw_change=0.0, pitch_change=0.0, new_identity=False, flip=False, jitter=False)
        assert r.image.shape == (SIZE, SIZE, 3) and r.image.dtype == np.uint8
        assert r.target.shape == (468, 3) and r.target.dtype == np.float32
        # the targets, taken back to the photo, are where the fitted head's points project there
        points = surface_points(faces.model.shape(fit.identity, fit.expression), vertices, bary)
        truth = fit.camera.project(points @ fit.rotation.T + fit.translation)
        linear, offset = r.to_crop[:, :2], r.to_crop[:, 2]
        back = (r.target[:, :2] - 0.5 - offset) @ np.linalg.inv(linear).T
        assert np.abs(back - truth).max() < 1.0
        # drawn with the photo's texture in place, the head looks like the photo there
        photo = photo_crop(load_image(fit.photo), r.to_crop, SIZE).astype(np.float32)
        inner = r.mask.copy()
        inner[: SIZE // 4], inner[-SIZE // 4:] = False, False
        assert np.abs(r.image.astype(np.float32) - photo)[inner].mean() < 12.0


def test_the_old_face_is_painted_out(faces):
    import cv2
    from facerecon.load import load_image
    fit = faces.reposed[0]
    r = plain(faces, 0, yaw_change=0.0, pitch_change=0.0, new_identity=False, flip=False, jitter=False)
    photo = photo_crop(load_image(fit.photo), r.to_crop, SIZE)
    filled = painted_out(photo, r.cam_vertices, r.camera, faces.model, 10)   # the old head, unmoved
    detail = [np.abs(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))[r.mask].mean()
              for im in (photo, filled)]
    assert detail[1] < 0.3 * detail[0], detail
    # away from the head the background is the photo's
    far = cv2.dilate(r.mask.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert far.sum() > 1000 and np.abs(filled[far].astype(int) - photo[far]).max() <= 1


def test_reposed_targets_lie_on_the_new_head_and_flip_with_it(faces):
    from facerecon.landmarks import mirror_points
    for index in range(3):
        r = plain(faces, index, yaw_change=50.0 * (index - 1), new_identity=True, flip=False)
        f = plain(faces, index, yaw_change=50.0 * (index - 1), new_identity=True, flip=True)
        # the nose tip and the mouth corners are drawn where their targets say
        for point in (1, 61, 291):
            x, y = r.target[point, :2]
            assert 0 < x < SIZE and 0 < y < SIZE
            assert r.mask[int(y), int(x)]
        assert np.array_equal(f.image, r.image[:, ::-1]) and np.array_equal(f.mask, r.mask[:, ::-1])
        assert np.allclose(f.target, mirror_points(r.target, SIZE), atol=1e-3)


def test_samples_are_a_function_of_seed_and_index(faces):
    a, b = faces.reposed_sample(7), faces.reposed_sample(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.target, b.target)
    other = LandmarkFaces(faces.textures, faces.settings, faces.seed + 1, reposed=faces.reposed, repose=faces.repose)
    assert not np.array_equal(other.reposed_sample(7).target, a.target)
    # in the mixed stream every second index is re-posed (repose.every = 2), the others rendered
    image, target, weight, marks = faces[7]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == np.float32 and target.shape == (468 * 3,)
    assert np.array_equal(target, a.target.reshape(-1)) and weight.tolist() == [1.0] and not marks.any()
    assert not np.array_equal(faces[8][1], faces.reposed_sample(8).target.reshape(-1))


def test_config_keys():
    data = {"repose_every": 3, "repose_photos": ["a", "b"], "real_every": 4}
    settings = ReposeSettings.from_config(data)
    assert settings.every == 3 and settings.photos == ("a", "b") and data == {"real_every": 4}
    with pytest.raises(TypeError):
        ReposeSettings.from_config({"repose_colour": 1})


def test_training_mixes_them_in(fitted, tmp_path):
    """``data.repose_*`` in a config: the run uses the cached fits (none is fitted again)."""
    from facerecon.assets import PACKAGE_DATA
    from facerecon.landmarks import MODEL_FILE
    from facerecon.training.train import train
    pytest.importorskip("torch")
    folder, cache, _, _ = fitted
    config = write_training_config(
        tmp_path, threads=1, model={"kind": "landmarks", "init": PACKAGE_DATA / MODEL_FILE, "input_size": SIZE},
        data={"framing": "landmarks", "textures": 1, "base_texture_size": 64, "supersample": 1, "repose_every": 1,
              "repose_photos": [folder], "repose_cache": cache, "repose_texture_size": 256},
        train={"batch_size": 2, "steps": 1, "lr": 1.0e-5, "checkpoint_every": 1, "val_every": 1, "val_samples": 1})
    result = train(config)
    assert result.steps == 1 and np.isfinite(result.loss)
    assert not (tmp_path / "run" / "repose").exists()
