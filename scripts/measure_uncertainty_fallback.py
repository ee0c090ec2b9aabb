"""Should ``dense`` fall back to Face Mesh where its network's mean predicted sigma is high (the
issue's "unsure" crop), beside the face-presence test it uses? Measured on the calibration data
only: helen_train (every ``--every``-th face, 68-point NME by the interocular distance) and renders
of heads the evaluation does not use (``first=100``; NME by the box). Per face: the mean sigma over
the face size (the points' box, sqrt(w * h)), the PnP yaw, and the NME of ``dense`` and of ``fit``
(Face Mesh). Prints the sigma by yaw, and what falling back above a threshold (each a quantile of
helen_train's sigmas) would do to each set's mean NME. The table is in docs/landmarks.md.

    python scripts/measure_uncertainty_fallback.py [--every 1] [--identities 16]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from calibrate_auto_method import helen_faces, render_faces   # the same calibration faces
from facerecon.evaluation.metrics import nme
from facerecon.evaluation.protocols import reconstruct
from facerecon.pipeline import Reconstructor

QUANTILES = (0.9, 0.95, 0.98, 0.99)
YAW_BINS = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 95.0)


def score(run: Reconstructor, image, detection, camera, truth68, norm, vertices=None) -> tuple | None:
    """(relative mean sigma, |PnP yaw|, NME dense, NME fit) of one face; None where ``dense`` falls
    back to Face Mesh (no confident points) or either finds no face."""
    dense, fit = (reconstruct(run, name, image, detection, camera) for name in ("dense", "fit"))
    if dense is None or fit is None or dense.fit.extra.get("method") != "dense" or dense.landmarks.sigma is None:
        return None
    marks = dense.landmarks   # the network's own points (dense did not fall back)
    span = np.ptp(marks.points[:, :2], axis=0)
    return (float(np.mean(marks.sigma) / np.sqrt(span.prod())), abs(run.get_method("dense").yaw(marks.points, camera)),
            nme(dense.landmarks68()[0], truth68, norm), nme(fit.landmarks68()[0], truth68, norm))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--identities", type=int, default=16)
    args = parser.parse_args()
    run = Reconstructor()
    sets = {"helen_train": [score(run, *face) for face in helen_faces(args.every)]}
    with tempfile.TemporaryDirectory() as tmp:
        sets["renders"] = [score(run, *face) for face in render_faces(run, args.identities, Path(tmp))]
    sets = {name: np.array([r for r in rows if r is not None]) for name, rows in sets.items()}
    print("set | yaw bin | faces | median relative sigma | NME dense | NME fit")
    for name, rows in sets.items():
        for lo, hi in zip(YAW_BINS, YAW_BINS[1:]):
            hit = rows[(rows[:, 1] >= lo) & (rows[:, 1] < hi)]
            if len(hit):
                print(f"{name} | [{lo:g},{hi:g}) | {len(hit)} | {np.median(hit[:, 0]):.4f} | "
                      f"{100 * hit[:, 2].mean():.3f} % | {100 * hit[:, 3].mean():.3f} %")
    print("fall back above (helen_train quantile) | threshold | " + " | ".join(
        f"{name}: faces, mean NME" for name in sets))
    print("never | - | " + " | ".join(f"0, {100 * rows[:, 2].mean():.3f} %" for rows in sets.values()))
    for q in QUANTILES:
        threshold = float(np.quantile(sets["helen_train"][:, 0], q))
        cells = []
        for rows in sets.values():
            unsure = rows[:, 0] > threshold
            cells.append(f"{unsure.sum()}, {100 * np.where(unsure, rows[:, 3], rows[:, 2]).mean():.3f} %")
        print(f"{q:g} | {threshold:.4f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
