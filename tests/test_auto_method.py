"""--method auto: Face Mesh's fit for faces turned less than DENSE_FROM_YAW, the dense network's beyond,
decided by the dense network's yaw, and said in the JSON."""
from __future__ import annotations

import pytest

import facerecon.methods.auto as auto
from facerecon.assets import PACKAGE_DATA
from facerecon.evaluation import synthetic
from facerecon.evaluation.protocols import base_texture
from facerecon.load import load_image

EXAMPLE = PACKAGE_DATA.parent / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def turned(run, tmp_path_factory):
    """A synthetic head (an identity the evaluation does not use) 70 degrees to the side."""
    (head,) = synthetic.make_heads(run.model, base_texture(run, 256), 1, first=101)
    return synthetic.render_sample(run.model, head, 70.0, 0.0, 256, tmp_path_factory.mktemp("turned"))


def reconstruct(run, image, camera):
    (det,) = run.detect(image).faces
    return run.reconstruct_face(image, det, camera, with_texture=False, method="auto")


def test_a_frontal_face_gets_face_meshs_fit(run):
    photo = load_image(EXAMPLE)
    face = reconstruct(run, photo, run.camera_for(photo))
    data = face.to_dict()["fit"]
    assert data["method"] == "fit" and data["chosen_by"].startswith("auto: yaw ")
    assert abs(float(data["chosen_by"].split()[2])) < auto.DENSE_FROM_YAW
    plain = run.reconstruct_face(photo, run.detect(photo).faces[0], run.camera_for(photo), with_texture=False)
    assert (face.vertices == plain.vertices).all()          # exactly the default fit


def test_a_turned_face_gets_the_dense_fit_and_its_yaw_is_close(run, turned):
    face = reconstruct(run, turned.image, turned.camera)
    data = face.to_dict()["fit"]
    assert data["method"] == "dense"
    seen = float(data["chosen_by"].split()[2])
    assert seen >= auto.DENSE_FROM_YAW and abs(seen - turned.yaw_deg) < 10.0
    assert abs(face.fit.angles[0] - turned.yaw_deg) < 10.0
    assert face.fit.residual_px < 3.0


def test_the_switch_follows_the_threshold(run, turned, monkeypatch):
    monkeypatch.setattr(auto, "DENSE_FROM_YAW", 89.0)      # nothing is turned enough
    assert reconstruct(run, turned.image, turned.camera).to_dict()["fit"]["method"] == "fit"
