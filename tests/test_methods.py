"""The method registry and the options object: one list of methods, clear errors for the rest."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from facerecon import methods
from facerecon.assets import TRAIN_CONFIG
from facerecon.errors import AssetError
from facerecon.options import ReconstructOptions

NOT_INSTALLED = [name for name in methods.names() if methods.spec(name).unavailable() is not None]


def test_the_registry_lists_every_method_once_with_the_default_first():
    assert methods.names() == ("auto", "fit", "dense", "regress", "guided", "vrn")
    assert methods.DEFAULT_METHOD == methods.names()[0]
    assert methods.names(fits_landmarks=True) == ("fit", "dense")
    with pytest.raises(ValueError, match="registered already"):
        methods.register(methods.MethodSpec("fit", "again", "fit:LandmarkFit"))
    text = methods.describe()
    assert all(f"{name}:" in text for name in methods.names())
    for name in NOT_INSTALLED:
        assert TRAIN_CONFIG[methods.spec(name).networks[0].name] in text


@pytest.mark.parametrize("name", ["fitt", "", None, 3])
def test_an_unknown_method_is_an_error_not_a_fit(name):
    from facerecon.pipeline import Reconstructor
    with pytest.raises(ValueError, match="method must be one of auto, fit, dense, regress, guided, vrn"):
        Reconstructor(method=name)
    with pytest.raises(ValueError, match="--method must be one of"):
        ReconstructOptions(method=name, names={"method": "--method"})


@pytest.mark.skipif(not NOT_INSTALLED, reason="every method's network is installed here (trained locally)")
@pytest.mark.parametrize("name", NOT_INSTALLED)
def test_a_method_whose_network_does_not_ship_says_how_to_make_it(name):
    from facerecon.pipeline import Reconstructor
    config = TRAIN_CONFIG[methods.spec(name).networks[0].name]
    with pytest.raises(AssetError, match=f"facerecon train {config}") as info:
        Reconstructor(method=name)
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.skipif(not NOT_INSTALLED, reason="every method's network is installed here (trained locally)")
def test_a_per_face_method_that_is_not_installed_is_the_same_error(run):
    import numpy as np

    from facerecon.detect import box_detection
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(AssetError, match="facerecon train"):
        run.reconstruct_face(image, box_detection(np.array([8.0, 8, 56, 56])), run.camera_for(image),
                             method=NOT_INSTALLED[0])


def test_the_methods_that_ship_are_made_once_per_reconstructor(run):
    made = {name: run.get_method(name) for name in methods.names() if name not in NOT_INSTALLED}
    assert {name: m.name for name, m in made.items()} == {name: name for name in made}
    assert all(run.get_method(name) is m for name, m in made.items())
    assert run.get_method() is run.get_method(run.method)
    assert run.get_method("fit").fitter is run.fitter        # the shared fitter, not a second one
    regress = made["regress"]
    assert "regressor" not in regress.__dict__                # made, but its network not yet loaded
    regress.load()
    network = regress.regressor
    regress.load()
    assert regress.regressor is network                        # loaded once


def test_base_method_loads_its_networks_once_and_closes_only_those_loaded():
    from functools import cached_property
    made, closed = [], []

    class Network:
        def close(self):
            closed.append(self)

    class TwoNetworks(methods.BaseMethod):
        name = "two"
        network_attributes = ("first", "second")

        @cached_property
        def first(self):
            made.append("first")
            return Network()

        @cached_property
        def second(self):
            made.append("second")
            return object()        # no close: nothing to free

    method = TwoNetworks(methods.Shared(model="model", estimator=None, fitter=None))
    assert method.model == "model" and method.shared.model == "model"
    method.close()
    assert made == [] and closed == []     # nothing loaded, nothing made to close it
    method.load()
    method.load()
    assert made == ["first", "second"]
    method.close()
    assert closed == [method.first]


def test_options_are_checked_named_by_flag_and_travel_to_workers():
    options = ReconstructOptions(method="dense", fov_deg=60, formats="GLB, obj,glb", units="mm", turntable=True)
    assert options.formats == ("glb", "obj") and options.fov_deg == 60.0
    assert pickle.loads(pickle.dumps(options)) == options
    assert dataclasses.replace(options, texture_size=64).texture_size == 64
    for field, value, message in [("texture_size", 5, "--texture-size"), ("fov_deg", 170.0, "--fov"),
                                  ("max_faces", 0, "--max-faces"), ("formats", "fbx", "--format"),
                                  ("units", "in", "--units"), ("overlay", "yes", "--overlay")]:
        with pytest.raises(ValueError, match=message):
            ReconstructOptions(**{field: value}, names={field: message})
        with pytest.raises(ValueError, match=field):
            ReconstructOptions(**{field: value})


def test_guided_gives_its_network_the_fits_68_points_and_vrn_passes_on_an_empty_volume(run):
    """The two methods whose networks do not ship, with stand-ins for the networks: what they are given and return."""
    import numpy as np

    from facerecon.load import load_image
    from helpers import EXAMPLE
    from facerecon.methods.guided import GuidedRegression
    from facerecon.methods.vrn import VolumetricRegression
    image = load_image(EXAMPLE)
    (det,) = run.detect(image).faces
    camera = run.camera_for(image)
    shared = methods.Shared(run.model, run.estimator, run.fitter)
    given = {}

    class Network:
        def fit(self, image, detection, camera, landmarks68=None):
            given["landmarks68"] = landmarks68
            return run.get_method("fit").estimate(image, detection, camera).fit, None

        def fit_volume(self, image, detection, camera):
            return None

    guided = GuidedRegression(shared)
    guided.__dict__["regressor"] = Network()
    found = guided.estimate(image, det, camera)
    plain = run.reconstruct_face(image, det, camera, with_texture=False, method="fit")
    corners = plain.vertices_camera[run.model.landmarks68]     # the model's 68 landmark vertices
    assert np.allclose(given["landmarks68"], camera.project(corners), atol=1e-3)
    assert given["landmarks68"].shape == (68, 2)
    assert np.allclose(found.landmarks.points, plain.landmarks.points) and found.landmarks_ms > 0
    vrn = VolumetricRegression(shared)
    vrn.__dict__["regressor"] = type("Volume", (), {"fit": Network.fit_volume})()
    assert vrn.estimate(image, det, camera) is None
