"""The regressor's training side: synthetic samples, flip consistency, a short run with resume, ONNX."""
from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import write_training_config  # noqa: E402
from facerecon.training.data import DataSettings, SyntheticFaces  # noqa: E402


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaces(np.full((1, 64, 64, 3), 170, np.uint8), DataSettings(), seed=5)


def _inside(points: np.ndarray, mask: np.ndarray) -> float:
    """Share of crop-frame points inside the crop whose pixel lies on the head mask (grown by one
    pixel: the silhouette's edge pixels are half covered)."""
    from scipy.ndimage import binary_dilation
    mask = binary_dilation(mask)
    size = mask.shape[0]
    points = points[np.all(np.abs(points[:, :2]) < 0.98, axis=1)]
    px = np.clip(np.round((points[:, :2] + 1) * size / 2 - 0.5).astype(int), 0, size - 1)
    return float(mask[px[:, 1], px[:, 0]].mean())


def test_mirror_map_pairs_left_and_right(faces):
    m = faces.model
    lm, mirror = m.landmarks68, m.mirror_vertex
    for left, right in ((36, 45), (39, 42), (48, 54), (31, 35)):
        assert np.linalg.norm(m.neutral[mirror[lm[left]]] - m.neutral[lm[right]]) < 0.3   # cm
    face = np.arange(9409)
    assert np.median(np.abs(m.neutral[mirror[face], 0] + m.neutral[face, 0])) < 0.05


def test_flip_keeps_image_and_ground_truth_consistent(faces):
    for index in range(4):
        plain = faces.sample(index, flip=False, occlude=False, augment_colour=False)
        flipped = faces.sample(index, flip=True, occlude=False, augment_colour=False)
        assert np.array_equal(flipped.image, plain.image[:, ::-1])
        face = np.arange(9409)
        # the ground truth lies on the head in both; an unmirrored target would miss it
        assert _inside(plain.points[face], plain.mask) > 0.995
        assert _inside(flipped.points[face], flipped.mask) > 0.995
        # vertex j of the flipped truth is the mirror partner of j, reflected
        j = faces.model.landmarks68[36]
        partner = faces.model.mirror_vertex[j]
        assert np.allclose(flipped.points[j], plain.points[partner] * [-1, 1, 1], atol=1e-5)
        assert flipped.posmap.shape == (128, 128, 3)


def test_training_runs_resumes_and_exports(tmp_path):
    from facerecon.training.export import onnx_max_difference
    from facerecon.training.network import PosMapNet
    from facerecon.training.train import train
    config = write_training_config(
        tmp_path, model={"input_size": 64, "width": 0.25, "blocks_per_stage": 1, "convs_per_scale": 1},
        data={"textures": 2, "base_texture_size": 64},
        train={"batch_size": 2, "steps": 3, "lr": 1.0e-3, "checkpoint_every": 1, "val_every": 2, "val_samples": 2},
        export=tmp_path / "model.onnx")
    first = train(config, max_steps=2)
    assert first.steps == 2 and (tmp_path / "run" / "last.pt").exists()
    second = train(config, resume=True)
    assert second.steps == 3
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 3
    with open(tmp_path / "run" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [2, 3]          # every 10 steps, at validations, at the end
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    # the exported model computes what the trained network computes
    net = PosMapNet(3, 0.25, 1, 1)
    net.load_state_dict(state["model"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert onnx_max_difference(net, tmp_path / "run" / "model.onnx", x) < 1e-4
    # the shipped copy has int8 weights: a fraction of the size, the output within the weights' rounding
    with torch.no_grad():
        scale = float(net.eval()(x).abs().max())
    assert 0 < onnx_max_difference(net, tmp_path / "model.onnx", x) < 0.05 * scale
    assert (tmp_path / "model.onnx").stat().st_size < 0.5 * (tmp_path / "run" / "model.onnx").stat().st_size


@pytest.mark.parametrize("channels, data", [(6, {"views": 2}), (71, {"heatmaps": 68})])
def test_training_with_more_input_channels_validates_and_exports(tmp_path, channels, data):
    """The two-view and landmark-guided configs: validation and export see all input channels."""
    import onnxruntime as ort
    from facerecon.training.train import train
    config = write_training_config(
        tmp_path, model={"input_size": 64, "in_channels": channels, "width": 0.25, "blocks_per_stage": 1,
                         "convs_per_scale": 1},
        data={"textures": 1, "base_texture_size": 64, **data},
        train={"batch_size": 2, "steps": 2, "val_every": 1, "val_samples": 2}, export=tmp_path / "model.onnx")
    result = train(config)
    assert result.steps == 2 and np.isfinite(result.val_mm)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == channels


def test_network_shapes_for_all_input_kinds():
    from facerecon.training.network import PosMapNet
    for channels in (3, 6, 3 + 68):          # one image, two views, image + landmark heatmaps
        net = PosMapNet(channels, width=0.25, blocks_per_stage=1, convs_per_scale=1).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, channels, 64, 64)).shape == (1, 3, 64, 64)


def test_two_view_and_heatmap_inputs():
    settings = DataSettings(views=2, heatmaps=68)
    faces = SyntheticFaces(np.full((1, 64, 64, 3), 170, np.uint8), settings, seed=2)
    image, posmap, weights = faces[0]
    assert image.shape == (3 + 3 + 68, 128, 128) and posmap.shape == (3, 128, 128)
    s = faces.sample(0, flip=True, occlude=False)
    # heatmap k peaks where landmark vertex k of the (flipped) truth projects
    k = 30                                                    # nose tip
    peak = np.unravel_index(np.argmax(s.extra[3 + k]), (128, 128))
    expected = (s.points[faces.model.landmarks68[k], :2] + 1) * 64 - 0.5
    assert np.hypot(peak[1] - expected[0], peak[0] - expected[1]) < 6


def test_volumetric_samples_and_network():
    from facerecon.training.network import build_network
    from facerecon.training.volumetric import VolumeFaces, volume_loss
    faces = VolumeFaces(np.full((1, 64, 64, 3), 170, np.uint8), DataSettings(), seed=3, bins=32)
    image, volume, _ = faces[0]
    assert image.shape == (3, 128, 128) and volume.shape == (32, 64, 64)
    assert set(np.unique(volume)) == {0.0, 1.0}
    net = build_network({"kind": "volume", "depth_bins": 32, "width": 0.25, "blocks_per_stage": 1,
                         "convs_per_scale": 1}).eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(image)[None])
    assert logits.shape == (1, 32, 64, 64)
    assert float(volume_loss(logits, torch.from_numpy(volume)[None])) > 0
