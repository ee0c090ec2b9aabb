"""Several photos of one person: joint fit, view checks, fused texture and the --same-person CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import EXAMPLE
from facerecon.evaluation import synthetic
from facerecon.evaluation.protocols import base_texture, dense_error
from facerecon.load import load_image
from facerecon.multiview import joint_fit_views, prepare_views, reconstruct_same_person
from facerecon.texture import bake_texture
from facerecon.model import load_model


@pytest.fixture(scope="module")
def mvfnet(eval_dir):
    folder = eval_dir / "multiview" / "mvfnet"
    return {name: load_image(folder / f"{name}.jpg") for name in ("front", "left", "right")}


@pytest.fixture(scope="module")
def heads(run):
    return synthetic.make_heads(run.model, base_texture(run, 256), 2)


def _render(run, head, yaw, tmp_path_factory):
    return synthetic.render_sample(run.model, head, yaw, 0.0, 256, tmp_path_factory.mktemp("renders"))


def test_joint_fit_beats_the_worse_single_view(run, heads, tmp_path_factory):
    renders = [_render(run, heads[0], yaw, tmp_path_factory) for yaw in (0.0, 60.0)]
    views = prepare_views(run, [r.image for r in renders])
    assert all(v.usable for v in views)
    alone = [np.sqrt(np.mean(dense_error(v.solo.vertices(run.model), r.vertices) ** 2)) for v, r in zip(views, renders)]
    joint = joint_fit_views(run.fitter, views)
    both = np.sqrt(np.mean(dense_error(run.model.shape(joint.identity, joint.fits[0].expression),
                                       renders[0].vertices) ** 2))
    assert both < max(alone), (both, alone)
    # one identity, a pose per view: the side view is turned by about 60 degrees more
    assert np.array_equal(joint.fits[0].identity, joint.fits[1].identity)
    assert 45 < joint.fits[1].angles[0] - joint.fits[0].angles[0] < 75


def test_views_of_one_person_are_all_kept(run, heads, tmp_path_factory):
    images = [_render(run, heads[1], yaw, tmp_path_factory).image for yaw in (0.0, 30.0, 60.0)]
    result = reconstruct_same_person(run, images, ["a", "a30", "a60"], with_texture=False)
    assert [v.status for v in result.views] == ["used"] * 3, result.warnings


def test_a_view_of_another_person_is_rejected(run, heads, tmp_path_factory):
    # head 1's "anti-face" twice over (its identity times -2): a grossly different person, the kind
    # of difference 2D landmarks can show
    other = dataclasses.replace(heads[1], index=51, identity=-2.0 * heads[1].identity)
    images = [_render(run, heads[1], yaw, tmp_path_factory).image for yaw in (0.0, 30.0)]
    images.append(_render(run, other, 20.0, tmp_path_factory).image)
    result = reconstruct_same_person(run, images, ["a", "a30", "other"], with_texture=False)
    status = {v.source: v.status for v in result.views}
    assert status == {"a": "used", "a30": "used", "other": "rejected"}, result.warnings
    assert any(w.startswith("other: disagrees") for w in result.warnings)


def test_duplicates_no_face_and_fallback_to_one_view(run, mvfnet):
    grey = np.full((200, 300, 3), 128, np.uint8)
    result = reconstruct_same_person(run, [mvfnet["front"], mvfnet["front"].copy(), grey],
                                     ["front", "copy", "grey"], with_texture=False)
    views = {v.source: v for v in result.views}
    assert views["copy"].status == "skipped" and "duplicate of front" in views["copy"].reason
    assert views["grey"].status == "skipped" and "no face" in views["grey"].reason
    assert [v.source for v in result.used] == ["front"]
    assert any("single-view" in w for w in result.warnings)
    assert np.array_equal(result.identity, views["front"].solo.identity)


def test_of_several_faces_the_one_matching_the_others_is_taken(run, mvfnet, eval_dir):
    from facerecon.evaluation.datasets import james_scan
    james = james_scan().photos[0]
    james = cv2.resize(james, (round(224 * james.shape[1] / james.shape[0]), 224), interpolation=cv2.INTER_AREA)
    both = np.ascontiguousarray(np.hstack([james, mvfnet["front"]]))   # another man left, ours right
    result = reconstruct_same_person(run, [both, mvfnet["left"], mvfnet["right"]], ["both", "left", "right"],
                                     with_texture=False)
    view = result.views[0]
    assert view.faces == 2 and view.status == "used"
    assert view.detection.box[0] > james.shape[1] - 10, view.reason
    assert "2 faces: took face" in view.reason


def test_fused_texture_covers_more_than_the_front_view(run, mvfnet):
    result = reconstruct_same_person(run, list(mvfnet.values()), list(mvfnet))
    front = result.views[0]
    alone = bake_texture(front.image, front.solo.to_camera(front.solo.vertices(run.model)), front.camera,
                         run.model, 256)
    fused = np.count_nonzero(result.visibility > 0.5)
    assert fused > 1.1 * np.count_nonzero(alone.visibility > 0.5)
    assert result.texture.shape == (256, 256, 3)
    # exposure gains are near 1 for photos of one session, and exactly 1 for the reference
    assert result.gains["front"] == [1.0, 1.0, 1.0]
    assert all(0.7 < g < 1.4 for gains in result.gains.values() for g in gains)


def test_cli_same_person_writes_one_head_with_per_view_poses(tmp_path, eval_dir):
    folder = eval_dir / "multiview" / "mvfnet"
    out = tmp_path / "out"
    env = dict(os.environ, COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "facerecon", "reconstruct", "--same-person",
                           str(folder / "front.jpg"), str(folder / "left.jpg"), str(folder / "right.jpg"),
                           str(folder / "front.jpg"), "-o", str(out), "--texture-size", "256", "--format", "obj,glb"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "duplicate" in done.stderr and "Traceback" not in done.stderr
    for name in ("head.obj", "head.png", "head.glb", "head.json", "overlay_0_front.png", "overlay_2_right.png"):
        assert (out / name).is_file(), name
    assert not (out / "head.ply").exists()
    data = json.loads((out / "head.json").read_text())
    yaw = {os.path.basename(v["source"]): v["pose"]["yaw_deg"] for v in data["views"] if v["status"] == "used"}
    assert set(yaw) == {"front.jpg", "left.jpg", "right.jpg"}
    assert np.sign(yaw["left.jpg"]) != np.sign(yaw["right.jpg"]) and min(abs(yaw["left.jpg"]), abs(yaw["right.jpg"])) > 10
    assert [r["status"] for r in data["rejected"]] == ["skipped"]
    assert len(data["identity"]) == load_model().n_identity and "jawOpen" in data["views"][0]["blendshapes_arkit"]


def test_two_photos_of_different_people_fall_back_to_one(run, mvfnet):
    astronaut = load_image(EXAMPLE)
    result = reconstruct_same_person(run, [mvfnet["front"], astronaut], ["man", "woman"], with_texture=False)
    assert len(result.used) == 1
    rejected = [v for v in result.views if v.status == "rejected"]
    assert len(rejected) == 1 and "the two views disagree" in rejected[0].reason
    assert any("single-view" in w for w in result.warnings)
