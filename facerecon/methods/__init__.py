"""The reconstruction methods: one registry for the API, the CLI, batch, the web app and the evaluation.

A method turns one detected face into a model fit and its 468 Face Mesh points (:class:`Method`).
Each is a small module of this package, registered below by name; the module is imported, and its
networks loaded, only when a :class:`~facerecon.pipeline.Reconstructor` first uses the method.

Light on purpose (no numpy): the CLI lists the methods and checks ``--method`` before loading anything.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..assets import GUIDED_MODEL, REGRESSOR_MODEL, TRAIN_CONFIG, VRN_MODEL, missing_network
from ..errors import AssetError, FaceReconError

if TYPE_CHECKING:
    import numpy as np

    from ..camera import Camera
    from ..detect import Detection
    from ..fit import FitResult, Fitter
    from ..landmarks import LandmarkEstimator, Landmarks
    from ..model import HeadModel

DEFAULT_METHOD = "auto"
# Video tracking refits one method's landmarks with the clip's identity fixed, so a clip keeps to
# one landmark method: the default's for frontal faces.
DEFAULT_VIDEO_METHOD = "fit"


class UnknownMethodError(FaceReconError, ValueError):
    """A method name the registry does not know."""


@dataclass
class Estimate:
    """What a method makes of one face."""

    fit: FitResult
    landmarks: Landmarks        # the 468 Face Mesh points in image pixels (methods without landmarks:
                                # the fitted head's, see regress.fitted_landmarks)
    landmarks_ms: float = 0.0   # of the method's time, the part spent placing landmarks


@dataclass(frozen=True)
class Shared:
    """What a Reconstructor holds for every method: the head model, Face Mesh and its fitter."""

    model: HeadModel
    estimator: LandmarkEstimator
    fitter: Fitter


class Method(Protocol):
    """One detected face -> an :class:`Estimate`. Built by :func:`create` with the
    Reconstructor's :class:`Shared` models; its own networks load once, on first use or at :meth:`load`."""

    name: str

    def load(self) -> None:
        """Load the networks now (later calls do nothing)."""

    def estimate(self, image: np.ndarray, detection: Detection, camera: Camera) -> Estimate | None:
        """The face in ``detection`` of ``image`` (H, W, 3) uint8 RGB, seen by ``camera``; None if
        the method finds no face in the box. Degenerate input may raise FitError."""

    def close(self) -> None:
        """Free the networks' native sessions."""


class BaseMethod:
    """What every method's class shares: the Reconstructor's :class:`Shared` models (``shared``;
    ``model``, the head model), and its own networks as ``cached_property`` attributes named in
    ``network_attributes``, so that each loads once, at :meth:`load` or on first use. Subclasses set
    ``name`` and write :meth:`~Method.estimate`."""

    name: str
    network_attributes: tuple[str, ...] = ()

    def __init__(self, shared: Shared):
        self.shared, self.model = shared, shared.model

    def load(self) -> None:
        for attribute in self.network_attributes:
            getattr(self, attribute)

    def close(self) -> None:
        """Close the networks that were loaded and have a ``close`` (native sessions)."""
        for attribute in self.network_attributes:
            close = getattr(self.__dict__.get(attribute), "close", None)
            if close is not None:
                close()


class LandmarkMethod(Method, Protocol):
    """A method that fits the model to landmarks it places: video tracking refits those points with
    the clip's identity held fixed."""

    fitter: Fitter

    def place(self, image: np.ndarray, detection: Detection, camera: Camera) -> Landmarks | None:
        """The landmarks of the face in ``detection``; None where the method trusts none."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str                        # one line for --help and the docs
    factory: str                        # "module:Class" in this package; the class takes a Shared
    networks: tuple[Path, ...] = ()     # the files it needs that may not be there (not shipped)
    fits_landmarks: bool = False        # a LandmarkMethod (video tracking takes these)

    def missing(self) -> Path | None:
        """The first of its networks that is not there, if any."""
        return next((path for path in self.networks if missing_network(path) is not None), None)

    def unavailable(self) -> str | None:
        """None where the method can run here, else one line saying what is missing and how to make it."""
        path = self.missing()
        if path is None:
            return None
        config = TRAIN_CONFIG.get(path.name)
        how = f"make it with `facerecon train {config}`" if config else f"put it at {path}"
        return f"method {self.name!r} needs the network {path.name}, which is not installed: {how} (see MODEL_CARD.md)"


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> None:
    """Add a method (a name already taken is an error: one name, one method)."""
    if spec.name in REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered already")
    REGISTRY[spec.name] = spec


register(MethodSpec("auto", "fit for frontal faces, dense for turned ones (auto.DENSE_FROM_YAW; the default)", "auto:TurnAwareFit"))
register(MethodSpec("fit", "Face Mesh landmarks + model fit", "fit:LandmarkFit", fits_landmarks=True))
register(MethodSpec("dense", "our ICT-surface landmark network + model fit", "dense:DenseLandmarkFit",
                    fits_landmarks=True))
register(MethodSpec("regress", "CNN position map + linear fit", "regress:PositionMapRegression",
                    (REGRESSOR_MODEL,)))
register(MethodSpec("guided", "the position-map CNN given the fit's 68 landmarks too",
                    "guided:GuidedRegression", (GUIDED_MODEL,)))
register(MethodSpec("vrn", "CNN occupancy volume + ICP", "vrn:VolumetricRegression", (VRN_MODEL,)))


def names(fits_landmarks: bool = False) -> tuple[str, ...]:
    """Every method's name; with ``fits_landmarks``, only the landmark methods'."""
    return tuple(n for n, s in REGISTRY.items() if s.fits_landmarks or not fits_landmarks)


def spec(name: object, label: str = "method") -> MethodSpec:
    """The registered method ``name``; UnknownMethodError otherwise (its message calls it ``label``)."""
    found = REGISTRY.get(name) if isinstance(name, str) else None
    if found is None:
        raise UnknownMethodError(f"{label} must be one of {', '.join(REGISTRY)}, got {name!r}")
    return found


def require(name: object) -> MethodSpec:
    """The method ``name`` where it can run here: UnknownMethodError, or AssetError (one line
    naming the training config) for a method whose network is not there."""
    found = spec(name)
    missing = found.unavailable()
    if missing is not None:
        raise AssetError(missing)
    return found


def create(name: str, shared: Shared) -> Method:
    """A new instance of method ``name`` (checked by :func:`require`); its networks load lazily."""
    module, cls = require(name).factory.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(shared)


def describe() -> str:
    """The methods in one paragraph, each with its availability (for --help)."""
    parts = []
    for s in REGISTRY.values():
        missing, note = s.missing(), ""
        if missing is not None:
            config = TRAIN_CONFIG.get(missing.name)
            note = f" (not installed: `facerecon train {config}` makes it)" if config else " (not installed)"
        parts.append(f"{s.name}: {s.summary}{note}")
    return "; ".join(parts) + "."
