"""facerecon scan --subject human: the solver's dense surface term, and the ICT head fitted to a scan
of a synthetic head (the project renderer, a real skin atlas) against the mean head."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facerecon.errors import ScanInputError
from facerecon.evaluation import synthetic
from facerecon.evaluation.headscan_protocol import WORLD, measure_head, render_ring
from facerecon.evaluation.protocols import base_texture, dense_error
from facerecon.fit import Fitter, FitResult, SurfaceTarget
from facerecon.geometry import vertex_normals
from facerecon.model import load_model, sample_identity
from facerecon.pipeline import Reconstructor
from facerecon.scan.human import SKIN_PARTS, head_for_scan

pytest.importorskip("xatlas")


def _rmse(model, identity, truth) -> float:
    return float(np.sqrt(np.mean(dense_error(model.shape(identity), truth) ** 2)))


def test_surface_term_recovers_the_identity():
    """Points on a random head matched to their own vertices, normals of the mean head: the dense
    term alone, from the mean head, lands far nearer the truth than the mean head is."""
    model = load_model()
    truth = model.shape(sample_identity(np.random.default_rng(3), model)).astype(np.float64)
    skin = model.triangles[np.isin(model.triangles, model.part_vertices(*SKIN_PARTS)).all(1)]
    vertices = np.random.default_rng(0).choice(np.unique(skin), 2000, replace=False)
    normals = vertex_normals(model.neutral.astype(np.float64), skin)[vertices]
    start = FitResult(np.zeros(model.n_identity, np.float32), np.zeros(model.n_expression, np.float32),
                      np.eye(3), np.zeros(3), None, np.nan, np.nan)
    corners = np.repeat(vertices[:, None], 3, 1)
    bary = np.tile([1.0, 0.0, 0.0], (len(vertices), 1))
    for solve_scale in (False, True):
        target = SurfaceTarget(1.1 * truth[vertices] if solve_scale else truth[vertices], corners, bary, normals,
                               np.full(len(vertices), 3.0), 17.0, 0.1, start, solve_scale=solve_scale)
        joint = Fitter(model).fit_views([], [], [], surface=target, iterations=4)
        mean_mm = _rmse(model, np.zeros(model.n_identity, np.float32), truth)
        # measured 0.59 mm (0.54 with the scale solved, which comes out 0.9 % off) against the mean head's 6.4
        assert _rmse(model, joint.identity, truth) < 0.2 * mean_mm
        if solve_scale:   # the target was 10 % too large: exp(log_scale) * 1.1 ~ 1
            assert abs(np.exp(joint.surface.extra["log_scale"]) * 1.1 - 1) < 0.03


@pytest.fixture(scope="module")
def run():
    with Reconstructor(texture_size=256) as r:
        yield r


def test_scanned_head_beats_the_mean_head(run, tmp_path):
    """A still synthetic head scanned from 12 views around it (192 px): the fitted identity is at
    least 50 % nearer the truth than the mean head (issue 17's target), the scale comes from the
    head. Seed 501 is one of the calibration heads the head fit's settings were chosen on (not the
    evaluation's); over heads 500-503 (12 and 24 views) the fit averaged 1.05 mm against the mean
    head's 4.63, the scale 2.0 % off on average."""
    head = synthetic.make_heads(run.model, base_texture(run, 256), 1, first=501)[0]
    row = measure_head(run, head, 12, 192)
    # measured: 1.49 mm against the mean head's 6.04 (the joint landmark fit 5.33); the scale 0.7 %
    # off (5.9 % while the surface's distances were measured in the head's frame, see docs/scan.md)
    assert row["scan_rmse_mm"] < 0.5 * row["mean_head_rmse_mm"], row
    assert abs(row["scale_error"]) < 0.03 and row["landmark_views"] >= 5, row


def test_scan_folder_has_the_head(run, tmp_path):
    from facerecon.scan import reconstruct
    from facerecon.scan.cameras import CameraSet, triangulate_matches
    from facerecon.scan.views import Views
    from facerecon.evaluation.headscan_protocol import default_scan_settings
    head = synthetic.make_heads(run.model, base_texture(run, 256), 1, first=502)[0]
    images, cameras, _ = render_ring(run.model, head, 12, 160)
    views = Views(images, [f"v{k:02d}.png" for k in range(12)], [1.0] * 12, "photos")
    settings = default_scan_settings(160)
    result = reconstruct(views, CameraSet(cameras, triangulate_matches(views, cameras), "known", list(range(12))),
                         settings, run=run)
    assert result.head is not None and result.scale.source == "head"
    assert abs(result.scale.metres_per_unit * WORLD.scale * 100 - 1) < 0.1
    paths = result.save(tmp_path / "out", settings)
    summary = json.loads(paths["json"].read_text())
    assert summary["subject"] == "human" and summary["scale"]["source"] == "head"
    for kind in ("head_glb", "head_obj", "head_json", "glb"):
        assert paths[kind].exists(), kind
    assert len(list((tmp_path / "out" / "overlays").glob("*_head.jpg"))) == summary["head"]["landmark_views"]


def test_no_face_is_one_clear_error(run):
    model = run.model
    blank = [np.zeros((160, 160, 3), np.uint8)] * 3
    _, cameras, truth = render_ring(model, synthetic.make_heads(model, np.zeros((8, 8, 3), np.uint8), 1)[0], 3, 160)
    with pytest.raises(ScanInputError, match="no view shows a face"):
        head_for_scan(blank, ["a", "b", "c"], cameras, truth, model.triangles, "human", None, 256, run=run)
    assert head_for_scan(blank, ["a", "b", "c"], cameras, truth, model.triangles, "auto", None, 256, run=run) is None
