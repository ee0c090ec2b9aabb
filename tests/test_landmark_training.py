"""The landmark network's training side: the ONNX graph as a torch module, targets on the rendered
head, flips, and a short fine-tuning run that exports a model the estimator runs."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import write_training_config  # noqa: E402
from facerecon.assets import PACKAGE_DATA  # noqa: E402
from facerecon.landmarks import DENSE_MODEL_FILE, MODEL_FILE, N_POINTS, _session  # noqa: E402
from facerecon.training.data import DataSettings  # noqa: E402
from facerecon.training.landmark_data import LandmarkFaces  # noqa: E402
from facerecon.training.onnx_module import OnnxModule, export_module  # noqa: E402


@pytest.fixture(scope="module")
def faces():
    settings = DataSettings(input_size=192, framing="landmarks", rotate=0.0, translate=0.0, scale=(1.0, 1.0))
    return LandmarkFaces(np.full((1, 64, 64, 3), 170, np.uint8), settings, seed=3)


# the converted Face Mesh graph, and a fine-tuned export of it (training goes on from either)
@pytest.mark.parametrize("model_file", [MODEL_FILE, DENSE_MODEL_FILE])
def test_module_reproduces_the_onnx_model_and_exports_it(tmp_path, model_file):
    net = OnnxModule(PACKAGE_DATA / model_file)
    x = torch.rand(2, 3, 192, 192, generator=torch.Generator().manual_seed(1))
    outputs = net(x)
    reference = _session(model_file).run(None, {"image": x.numpy()})
    assert len(outputs) == len(reference) == (3 if model_file == DENSE_MODEL_FILE else 2)   # + uncertainty
    for got, want in zip(outputs, reference):
        assert np.abs(got.detach().numpy() - want).max() < 1e-3
    # every convolution and PReLU slope is trainable
    sum(o.sum() for o in outputs).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())
    path = export_module(net, tmp_path / "again.onnx", 192)
    import onnxruntime as ort
    again = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    assert [o.shape for o in again] == [(2, N_POINTS * 3), (2, 1), (2, N_POINTS)][:len(reference)]
    assert np.abs(again[0] - reference[0]).max() < 1e-3


def test_targets_lie_on_the_rendered_face_and_flip_with_it(faces):
    for index in range(3):
        plain = faces.sample(index, flip=False, occlude=False, augment_colour=False, extra=False)
        image, target, _ = faces.synthetic(index, flip=False, occlude=False, augment_colour=False)
        flipped, target_f, _ = faces.synthetic(index, flip=True, occlude=False, augment_colour=False)
        assert np.array_equal(flipped, image[:, ::-1])
        # the nose tip's target is on the head, inside the crop
        x, y = target[1, :2]
        assert 0 < x < 192 and 0 < y < 192
        assert plain.mask[int(y), int(x)]
        # point i of the flipped target is point i's partner, mirrored (continuous x -> 192 - x)
        from facerecon.landmarks import mirror_permutation
        partner = mirror_permutation()
        assert np.allclose(target_f[:, 0], 192 - target[partner, 0], atol=1e-3)
        assert np.allclose(target_f[:, 1:], target[partner, 1:], atol=1e-3)


def test_the_identity_error_matrix_reads_an_identity_change_and_not_a_shift(faces):
    """Targets moved by a real identity change are read as about that change's face-area offset;
    the same targets shifted by 2 px (a pose change the fit absorbs) as almost none."""
    from facerecon.geometry import surface_points
    from facerecon.landmarks import dense_surface_points
    from facerecon.model import FACE_AREA
    from facerecon.training.identity_loss import identity_error_matrix
    from facerecon.training.landmark_data import landmark_targets
    model = faces.model
    for index, flip in ((0, False), (1, True)):
        s = faces.sample(index, flip=flip, occlude=False, augment_colour=False, extra=False)
        change = np.zeros(model.n_identity, np.float32)
        change[[0, 3]] = 0.4, -0.3
        moved = s.vertices + np.tensordot(change, model.identity_basis, 1)
        targets = [landmark_targets(v @ s.rotation.T + s.translation, s.camera, s.flipped)[:, :2] for v in (s.vertices, moved)]
        cam_points = surface_points(s.vertices @ s.rotation.T + s.translation, *dense_surface_points()).astype(np.float64)
        matrix = identity_error_matrix(model, s.rotation, cam_points, s.translation, s.camera, s.flipped)
        assert matrix.shape == (model.n_identity, 2 * N_POINTS)
        true_mm = 10.0 * np.sqrt(np.mean(np.sum(np.tensordot(change, model.identity_basis[:, FACE_AREA], 1) ** 2, axis=1)))
        read_mm = np.linalg.norm(matrix @ (targets[1] - targets[0]).reshape(-1))
        assert 0.6 * true_mm < read_mm < 1.2 * true_mm, (read_mm, true_mm)
        shifted_mm = np.linalg.norm(matrix @ np.tile([2.0, -2.0], N_POINTS))
        assert shifted_mm < 0.1 * true_mm, (shifted_mm, true_mm)


def test_the_landmark_crop_is_the_estimators(faces):
    """Un-jittered, the training crop is where the estimator's final pass would crop: the original
    network's points on it land near the targets (a mean error of a few pixels, not tens)."""
    errors = []
    net = _session(MODEL_FILE)
    for index in range(4):
        image, target, _ = faces.synthetic(index, flip=False, occlude=False, augment_colour=False)
        raw = net.run(None, {"image": image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0})[0]
        errors.append(np.linalg.norm(raw.reshape(N_POINTS, 3)[:, :2] - target[:, :2], axis=1).mean())
    assert np.median(errors) < 8.0, errors


def test_fine_tuning_runs_and_exports(tmp_path):
    from facerecon.landmarks import LandmarkEstimator
    from facerecon.training.train import train
    config = write_training_config(
        tmp_path, model={"kind": "landmarks", "init": PACKAGE_DATA / MODEL_FILE, "input_size": 192},
        data={"framing": "landmarks", "textures": 1, "base_texture_size": 64, "supersample": 1, "rotate": 8.0,
              "translate": 0.04, "identity_weight": 0.5},
        train={"batch_size": 2, "steps": 2, "lr": 1.0e-5, "checkpoint_every": 1, "val_every": 1, "val_samples": 2},
        export=tmp_path / "tuned.onnx")
    result = train(config)
    # the targets are checked above; here the run must validate finite, head-sized errors (the
    # untrained network on these two low-texture samples: about 20 mm)
    assert result.steps == 2 and np.isfinite(result.val_mm) and 0 < result.val_mm < 60
    assert (tmp_path / "run" / "last.pt").exists()
    estimator = LandmarkEstimator(str(tmp_path / "tuned.onnx"), refiner_file=None)   # absolute: the package folder is not needed
    image = np.zeros((192, 192, 3), np.float32)
    points, flag = estimator._net.run(None, {"image": image.transpose(2, 0, 1)[None]})
    assert points.shape == (1, N_POINTS * 3)


def test_uncertainty_head_trains_alone_exports_and_reloads(tmp_path):
    """The added head starts at the given sigma, its loss reaches no other weight, the export has a
    third output that loads again as the same head, and the estimator reads it as pixel sigmas."""
    from facerecon.landmarks import LandmarkEstimator
    from facerecon.training.landmark_data import landmark_loss, landmarks_only
    net = OnnxModule(PACKAGE_DATA / MODEL_FILE)
    assert not net.has_uncertainty and net.head_parameters() == []
    net.add_uncertainty_head(np.log(2.0))
    assert net.has_uncertainty and len(net.head_parameters()) == 2
    x = torch.rand(2, 3, 192, 192, generator=torch.Generator().manual_seed(2))
    out = landmarks_only(net)(x)
    assert out.shape == (2, N_POINTS * 4)
    assert torch.allclose(out[:, N_POINTS * 3:], torch.full((2, N_POINTS), float(np.log(2.0))))
    target = out[:, :N_POINTS * 3].detach() + 1.0
    # the likelihood term moves the head and nothing else: the other gradients are the position terms'
    landmark_loss(out[:, :N_POINTS * 3], target).backward(retain_graph=True)
    position_grads = {id(p): p.grad.clone() for p in net.parameters() if p.grad is not None}
    net.zero_grad()
    landmark_loss(out, target).backward()
    head = {id(p) for p in net.head_parameters()}
    assert not any(bool(position_grads[i].abs().sum() > 0) for i in head if i in position_grads)
    for p in net.parameters():
        if id(p) not in head and p.grad is not None:   # the face-flag branch has none
            assert torch.allclose(p.grad, position_grads[id(p)])
    assert all(bool(p.grad.abs().sum() > 0) for p in net.head_parameters())
    # real crops (exact 0) do not train the head
    net.zero_grad()
    landmark_loss(landmarks_only(net)(x), target, torch.zeros(2, 1)).backward()
    assert all(p.grad is None or not bool(p.grad.abs().sum() > 0) for p in net.head_parameters())

    with torch.no_grad():
        net.head_parameters()[1].add_(torch.linspace(0, 1, N_POINTS))
    path = export_module(net, tmp_path / "sigma.onnx", 192)
    again = OnnxModule(path)
    assert again.has_uncertainty and len(again.head_parameters()) == 2
    assert torch.allclose(again(x)[-1], net(x)[-1], atol=1e-4)
    estimator = LandmarkEstimator(str(path), refiner_file=None)
    from facerecon.detect import box_detection
    photo = (np.random.default_rng(0).uniform(0, 255, (256, 256, 3))).astype(np.uint8)
    marks = estimator.estimate(photo, box_detection(np.array([48, 48, 208, 208], np.float32)))
    if marks is not None:
        assert marks.sigma.shape == (N_POINTS,) and np.all(marks.sigma > 0)
    from facerecon.landmarks import Roi, crop_batch
    roi = Roi(np.array([128.0, 128.0]), 192.0, 0.0)
    _, _, sigma = estimator._run(crop_batch(photo, roi, mirror=True), roi)
    # crop sigma 2 * e^(0..1) (mirror-averaged in log), times the crop's pixel size
    assert sigma.shape == (N_POINTS,) and 2.0 * 0.99 < sigma.min() and sigma.max() < 2.0 * np.e * 1.01


@pytest.fixture(scope="module")
def marks_matrix():
    from facerecon.model import load_model
    from facerecon.training.landmark_data import marks_from_dense
    return marks_from_dense(load_model(), poses=60)


def test_the_dense_points_place_the_68_marks(marks_matrix):
    """Each iBUG point is an affine combination of 8 dense points that reproduces its projection on a
    head and pose the fit never saw, to about a pixel inside the face; the jaw, beyond the dense
    points' rim, is placed worse, and its residuals (so its confidence) say so."""
    from facerecon.camera import rotation_from_angles
    from facerecon.geometry import surface_points
    from facerecon.landmarks import dense_surface_points
    from facerecon.model import load_model, sample_identity
    from facerecon.pipeline import load_landmarks68
    placement = marks_matrix
    marks_matrix = placement.matrix
    assert np.allclose(marks_matrix.sum(1), 1.0, atol=1e-5) and ((marks_matrix != 0).sum(1) == 8).all()
    model = load_model()
    rng = np.random.default_rng(99)
    cam = model.shape(sample_identity(rng, model)) @ rotation_from_angles(25.0, -10.0, 5.0).T + [0.0, 0.0, 60.0]

    def project(at):   # crop pixels
        p = surface_points(cam, *at)
        return 540.0 * p[:, :2] / p[:, 2:]
    err = np.linalg.norm(marks_matrix @ project(dense_surface_points()) - project(load_landmarks68()), axis=1)
    assert np.median(err[17:]) < 1.0 and np.median(err[:17]) < 3.0, err
    confidence = placement.confidence()
    assert confidence.shape == (68,) and np.median(confidence[17:]) > 0.8 > np.median(confidence[:17])


def _helen_face():
    from facerecon.detect import box_detection
    from facerecon.evaluation.datasets import ibug300w
    from facerecon.landmarks import LandmarkEstimator, landmark_roi
    from facerecon.load import load_image
    from facerecon.training.landmark_data import RealFace
    sample = ibug300w(subsets=("helen_train",))[1]
    found = LandmarkEstimator(refiner_file=None).estimate(load_image(sample.image_path), box_detection(sample.box))
    return RealFace(sample.image_path, landmark_roi(found.points), sample.points + 0.5)


def test_real_crops_carry_their_marks_into_the_crop_and_mirror_them(marks_matrix):
    """The hand-marked points, moved into the jittered crop, land where the teacher's 468 place the
    68 (a few pixels: the two conventions differ), and a flipped crop mirrors them point for point."""
    from facerecon.training.landmark_data import IBUG68_MIRROR, JAW, RealMarks
    face = _helen_face()
    base = dict(input_size=192, framing="landmarks", rotate=8.0, translate=0.04, scale=(0.9, 1.1), dropout_prob=0.0)
    plain, flipped = (LandmarkFaces(np.full((1, 64, 64, 3), 170, np.uint8), DataSettings(**base, flip=f), seed=3,
                                    real=[face], real_every=1, marks=RealMarks(jaw_weight=0.25)) for f in (0.0, 1.0))
    for index in range(3):
        crop, teacher, marks = plain.real_sample(index)
        assert marks[JAW, 2].tolist() == [0.25] * 17 and (marks[17:, 2] == 1).all()
        err = np.linalg.norm(marks_matrix.matrix @ teacher[:, :2] - marks[:, :2], axis=1)
        assert np.median(err) < 6.0, err
        crop_f, _, marks_f = flipped.real_sample(index)
        assert np.array_equal(crop_f, crop[:, ::-1])
        assert np.allclose(marks_f[:, 0], 192 - marks[IBUG68_MIRROR, 0], atol=1e-4)
        assert np.allclose(marks_f[:, 1], marks[IBUG68_MIRROR, 1], atol=1e-4)
    # a held-out face (marks None) and a run without marks give no marks
    held = LandmarkFaces(plain.textures, plain.settings, 3, real=[face._replace(marks=None)], real_every=1,
                         marks=RealMarks())
    unmarked = LandmarkFaces(plain.textures, plain.settings, 3, real=[face], real_every=1)
    assert not held[0][3].any() and not unmarked[0][3].any()


def test_the_marks_term_pulls_the_placed_points_to_the_marks(marks_matrix):
    from facerecon.training.landmark_data import RealMarks, landmark_loss
    settings = RealMarks(weight=1.0, teacher_weight=0.5)
    w = torch.from_numpy(marks_matrix.matrix)
    pred = torch.rand(2, N_POINTS * 3, generator=torch.Generator().manual_seed(4)) * 150
    target = pred + 2.0
    exact = torch.zeros(2, 1)
    placed = torch.einsum("jk,nkc->njc", w, pred.view(2, N_POINTS, 3)[..., :2])
    unmarked = torch.zeros(2, 68, 3)
    base = landmark_loss(pred, target, exact)
    assert torch.allclose(landmark_loss(pred, target, exact, unmarked, placement=marks_matrix, real_marks=settings), base)
    on_marks = torch.cat([placed, torch.ones(2, 68, 1)], 2)
    # marks met exactly: only the teacher's term, at its weight
    assert torch.allclose(landmark_loss(pred, target, exact, on_marks, placement=marks_matrix, real_marks=settings), 0.5 * base)
    off = on_marks.clone()
    off[..., 0] += 3.0 / torch.from_numpy(marks_matrix.confidence())
    pred.requires_grad_(True)
    loss = landmark_loss(pred, target, exact, off, placement=marks_matrix, real_marks=settings)
    assert float(loss.detach()) > 0.5 * float(base) + 1.0
    loss.backward()
    touched = (pred.grad.view(2, N_POINTS, 3)[..., 0] - pred.grad.view(2, N_POINTS, 3)[..., 0].median()).abs() > 1e-7
    assert touched.any()


def test_held_out_photos_are_every_nth_face_by_name_and_none_for_zero(eval_dir):
    """What the marks' holdout and the re-posed faces leave out of training, and what
    scripts/compare_*_networks.py score on: every 4th helen_train face, sorted by name."""
    from facerecon.training.landmark_data import held_out_photos
    folder = eval_dir / "300w-helen-afw" / "helen_train"
    names = sorted(p.with_suffix(".jpg") for p in folder.glob("*.pts"))
    held = held_out_photos(folder, 4)
    assert held == set(names[::4]) and len(held) == (len(names) + 3) // 4
    assert held_out_photos(folder, 0) == set()


def test_a_roi_offset_round_trips():
    from facerecon.landmarks import Roi
    from facerecon.training.data import offset_roi, roi_offset
    final, first = Roi(np.array([100.0, 120.0]), 80.0, 0.3), Roi(np.array([110.0, 115.0]), 90.0, -3.0)
    back = offset_roi(final, np.array(roi_offset(final, first)))
    assert np.allclose(back.centre, first.centre) and np.isclose(back.side, first.side)
    assert np.isclose(np.cos(back.angle - first.angle), 1.0)


def test_a_detection_framing_comes_from_a_face_at_the_samples_yaw():
    from facerecon.landmarks import Roi
    from facerecon.training.data import DETECTION_FRAMING_YAW, detection_framed
    rows = np.array([[-80.0, 0.1, 0, 0, 0], [0.0, 0.2, 0, 0, 0], [5.0, 0.3, 0, 0, 0], [60.0, 0.4, 0, 0, 0]])
    final, rng = Roi(np.zeros(2), 1.0, 0.0), np.random.default_rng(0)
    near = {round(float(detection_framed(final, 2.0, rng, rows).centre[0]), 3) for _ in range(50)}
    assert near == {0.2, 0.3}
    assert float(detection_framed(final, 30.0 + DETECTION_FRAMING_YAW, rng, rows).centre[0]) == pytest.approx(0.4)


@pytest.mark.parametrize("yaw", [0.0, -55.0])
def test_the_detection_framing_table_is_our_detectors(tmp_path, yaw):
    """The shipped offsets (scripts/measure_detection_framing.py) cover every yaw, and what our
    detector gives on a new render lies within those measured near its yaw."""
    from facerecon.evaluation import synthetic
    from facerecon.evaluation.protocols import base_texture
    from facerecon.fit import load_correspondence
    from facerecon.geometry import surface_points
    from facerecon.landmarks import DETECTION_ROI_SCALES, detection_roi, landmark_roi
    from facerecon.pipeline import Reconstructor
    from facerecon.training.data import DETECTION_FRAMING_YAW, detection_offsets, roi_offset
    rows = detection_offsets()
    assert all(np.sum((rows[:, 0] >= lo) & (rows[:, 0] < lo + 15)) >= 20 for lo in range(-90, 90, 15))
    run = Reconstructor()
    head = synthetic.make_heads(run.model, base_texture(run), 1, first=900)[0]
    s = synthetic.render_sample(run.model, head, yaw, 5.0, 512, tmp_path)
    corr = load_correspondence()
    final = landmark_roi(s.camera.project(surface_points(s.vertices @ s.rotation.T + s.translation,
                                                         corr.vertices, corr.bary)))
    offset = np.array(roi_offset(final, detection_roi(run.detect(s.image).faces[0], DETECTION_ROI_SCALES[0])))
    near = rows[np.abs(rows[:, 0] - yaw) <= DETECTION_FRAMING_YAW, 1:4]
    lo, hi = np.percentile(near, 1, axis=0), np.percentile(near, 99, axis=0)
    assert np.all((offset[:3] >= lo - 0.02) & (offset[:3] <= hi + 0.02)), (offset, lo, hi)
