"""How strongly should ``dense``'s fit hold the identity (or the expression) to the prior? (Or any
other fit setting, of ``dense`` or, with ``--method fit``, of Face Mesh's fit.) Its points carry identity
that Face Mesh's do not, and their noise is not Face Mesh's, for which ``FitSettings.identity_prior``
was chosen. Measured on the calibration data only: helen_train's held-out faces (every
``--every``-th, 68-point NME by the interocular distance) and renders of heads the evaluation does
not use (``first=100``: 68-point NME by the box and the dense RMSE of the fitted head), as
``calibrate_auto_method.py`` makes them. The table is in docs/landmarks.md.

    python scripts/calibrate_dense_prior.py [--every 4] [--identities 8] [--setting identity_prior]
                                           [--values 2e-3,1e-3,5e-4] [--both] [--method dense|fit]

``--setting``: any ``FitSettings`` field, swept around ``methods.dense.FIT_SETTINGS`` (each face
fitted once per value, whatever its yaw); the last column splits the renders at
``dense.FRONTAL_BELOW_YAW``, below which ``dense`` refits with ``FRONTAL_FIT_SETTINGS``.
``--both``: the value replaces the setting in both of ``dense``'s fitters and each face is fitted
as ``dense`` fits it (the frontal split kept): for settings both share, such as ``iterations``.
``--method fit``: the setting of ``fit``'s one fitter (Face Mesh's points, ``FitSettings()``); its last
column is then the renders turned less than ``auto.DENSE_FROM_YAW``, the faces ``auto`` gives ``fit``.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibrate_auto_method import helen_faces, render_faces   # the same calibration faces
from facerecon.evaluation.metrics import nme
from facerecon.evaluation.protocols import dense_rmse, reconstruct
from facerecon.fit import Fitter, FitSettings
from facerecon.methods import auto, dense
from facerecon.pipeline import Reconstructor


def scores(run, name, fitters, image, detection, camera, truth68, norm, vertices=None) -> dict[float, tuple[float, float, float]]:
    """Setting value -> (68-point NME, dense RMSE mm or nan, fitted |yaw| degrees) for one face by
    method ``name``. ``fitters``: value -> a Fitter (every face fitted by it) or, for ``dense``, a
    (fitter, frontal fitter) pair (``dense``'s own choice between them)."""
    out = {}
    plain = dense.DenseLandmarkFit.fit_landmarks
    method = run.get_method(name)
    shipped = method.fitter if name == "fit" else None
    for prior, fitter in fitters.items():
        if name == "fit":
            method.fitter = fitter
        elif isinstance(fitter, tuple):
            method.__dict__.update(fitter=fitter[0], frontal_fitter=fitter[1])
        else:
            dense.DenseLandmarkFit.fit_landmarks = lambda self, marks, cam, f=fitter: f.fit(marks.points, cam)
        try:
            face = reconstruct(run, name, image, detection, camera)
        finally:
            dense.DenseLandmarkFit.fit_landmarks = plain
            if name == "fit":
                method.fitter = shipped
            else:
                for attribute in ("fitter", "frontal_fitter"):
                    method.__dict__.pop(attribute, None)
        if face is None or face.fit.extra.get("method", name) != name:
            out[prior] = (np.nan, np.nan, np.nan)
            continue
        rmse = np.nan if vertices is None else dense_rmse(face.vertices, vertices)
        out[prior] = (nme(face.landmarks68()[0], truth68, norm), rmse, abs(face.fit.angles[0]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--identities", type=int, default=8)
    parser.add_argument("--setting", default="identity_prior")
    parser.add_argument("--values", default="2e-3,1e-3,5e-4,2.5e-4,1.25e-4,6e-5")
    parser.add_argument("--both", action="store_true", help="set it in both of dense's fitters, keep its frontal split")
    parser.add_argument("--method", choices=("dense", "fit"), default="dense")
    args = parser.parse_args()
    if args.both and args.method != "dense":
        parser.error("--both sets the setting in dense's two fitters; fit has one")
    run = Reconstructor()
    fixed = dense.dense_correspondence() if args.method == "dense" else None
    shipped = dense.FIT_SETTINGS if args.method == "dense" else FitSettings()
    kind = type(getattr(shipped, args.setting))

    def fitter(settings, value):
        return Fitter(run.model, replace(settings, **{args.setting: kind(value)}), correspondence=fixed)

    fitters = {kind(v): (fitter(dense.FIT_SETTINGS, v), fitter(dense.FRONTAL_FIT_SETTINGS, v)) if args.both
               else fitter(shipped, v) for v in args.values.split(",")}
    real = [scores(run, args.method, fitters, *face) for face in helen_faces(args.every)]
    with tempfile.TemporaryDirectory() as tmp:
        rendered = [scores(run, args.method, fitters, *face) for face in render_faces(run, args.identities, Path(tmp))]
    real = [r for r in real if all(np.isfinite(v[0]) for v in r.values())]
    rendered = [r for r in rendered if all(np.isfinite(v[0]) for v in r.values())]
    first = next(iter(fitters))
    if args.method == "dense":
        split, split_name = [r for r in rendered if r[first][2] >= dense.FRONTAL_BELOW_YAW], f"turned {dense.FRONTAL_BELOW_YAW:g} degrees or more"
    else:
        split, split_name = [r for r in rendered if r[first][2] < auto.DENSE_FROM_YAW], f"turned less than {auto.DENSE_FROM_YAW:g} degrees"
    print(f"{args.setting} | helen_train NME ({len(real)} faces) | renders NME ({len(rendered)}) | renders dense RMSE"
          f" | ... of the {len(split)} {split_name}")
    for prior in fitters:
        marker = ("  (shipped)" if prior == getattr(shipped, args.setting) else "") + (
            "  (shipped for frontal faces)" if args.method == "dense" and prior == getattr(dense.FRONTAL_FIT_SETTINGS, args.setting) else "")
        print(f"{prior:g} | {100 * np.mean([r[prior][0] for r in real]):.3f} % | "
              f"{100 * np.mean([r[prior][0] for r in rendered]):.3f} % | "
              f"{np.mean([r[prior][1] for r in rendered]):.3f} mm | {np.mean([r[prior][1] for r in split]):.3f} mm{marker}")


if __name__ == "__main__":
    main()
