"""Calibrate ``--method auto``'s switch: from which yaw the dense network's fit beats Face Mesh's.

Two sources, neither a test set:
- helen_train (the calibration set; hand-marked, real, mostly within 40 degrees of yaw): the
  68-point NME of ``fit`` and ``dense`` by yaw bin (interocular, the hand-marked box).
- synthetic renders of ICT heads whose identities the evaluation never uses (``first=100``), 0-90
  degrees of yaw: the same NME against the heads' exact 68 points, by yaw bin.

Every sample is binned by the yaw ``auto`` decides on (the dense network's points posed on the
mean head, ``TurnAwareFit.yaw``). The renders favour ``dense`` at every yaw, the real photos
``fit``; the ratio NME(fit) / NME(dense) of the real photos over that of the renders in the bins
both cover is the renders' bias. The renders' ratio times that bias predicts the real photos'
ratio beyond where real photos go (in the bins real photos fill, their own ratio stands), and the
switch is the yaw where it first reaches 1 (linear between bin centres). ``auto.DENSE_FROM_YAW`` holds the result.

    python scripts/calibrate_auto_method.py [--identities 8] [--every 4]
"""
from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from facerecon.detect import box_detection
from facerecon.evaluation import synthetic
from facerecon.evaluation.datasets import ibug300w
from facerecon.evaluation.metrics import box_size, interocular, nme
from facerecon.evaluation.protocols import base_texture, default_camera, reconstruct
from facerecon.geometry import surface_points
from facerecon.load import load_image
from facerecon.pipeline import Reconstructor, load_landmarks68

BIN_DEG = 10.0
METHODS = ("fit", "dense")


def score(run: Reconstructor, turn, image, detection, camera, truth, norm) -> tuple[float, dict] | None:
    """(auto's yaw, {method: NME, "glance_yaw": the first pass's yaw}) of one face, or None where
    the dense network places no points."""
    dense = turn.dense.place(image, detection, camera)
    if dense is None:
        return None
    scores = {"glance_yaw": abs(turn.yaw(turn.dense.estimator.glance(image, detection).points, camera)),
              "first_fit_yaw": abs(turn.dense.fitter.fit(dense.points, camera).angles[0])}
    for method in METHODS:
        face = reconstruct(run, method, image, detection, camera)
        scores[method] = np.nan if face is None else nme(face.landmarks68()[0], truth, norm)
    return abs(turn.yaw(dense.points, camera)), scores


def helen_faces(every: int) -> Iterator[tuple]:
    """Every ``every``-th hand-marked helen_train face: (image, hand-marked box's detection, default
    camera, 68 marked points, interocular distance, None)."""
    for s in ibug300w(subsets=("helen_train",))[::every]:
        image = load_image(s.image_path)
        yield image, box_detection(s.box), default_camera(image), s.points, interocular(s.points), None


def render_faces(run: Reconstructor, identities: int, out: Path) -> Iterator[tuple]:
    """Renders of heads the evaluation does not use (``first=100``), 0-90 degrees of yaw (either
    side) by 10, pitch -15 / 0 / 15, the faces our detector finds: (image, detection, true camera,
    true 68 points, their box size, the true head's vertices)."""
    rng = np.random.default_rng(5)
    corners, bary = load_landmarks68()
    for head in synthetic.make_heads(run.model, base_texture(run), identities, first=100):
        for yaw in np.arange(0.0, 91.0, BIN_DEG):
            for pitch in (-15.0, 0.0, 15.0):
                s = synthetic.render_sample(run.model, head, float(yaw * rng.choice([-1, 1])), pitch, 256, out)
                truth = s.camera.project(surface_points(s.vertices, corners, bary) @ s.rotation.T + s.translation)
                found = run.detect(s.image).faces
                if found:
                    yield s.image, found[0], s.camera, truth, box_size(truth), s.vertices


def rows(run: Reconstructor, turn, faces: Iterable[tuple]) -> list[tuple[float, dict]]:
    scored = (score(run, turn, *face[:5]) for face in faces)
    return [row for row in scored if row]


def ratios(rows: list[tuple[float, dict]]) -> dict[float, tuple[int, float, float]]:
    """Bin centre -> (faces, mean NME fit, mean NME dense) over faces both methods scored."""
    out = {}
    for lo in np.arange(0.0, 90.0, BIN_DEG):
        hits = [s for yaw, s in rows if lo <= yaw < lo + BIN_DEG and all(np.isfinite(s[m]) for m in METHODS)]
        if hits:
            out[lo + BIN_DEG / 2] = (len(hits), *(float(np.mean([s[m] for s in hits])) for m in METHODS))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=8)
    # every 4th face: the ones whose hand marks the landmark network's training held out (RealMarks)
    parser.add_argument("--every", type=int, default=4, help="use every N-th helen_train face")
    parser.add_argument("--min-faces", type=int, default=20, help="bins with fewer real faces are not compared")
    args = parser.parse_args()
    run = Reconstructor()
    turn = run.get_method("auto")   # its dense network and its yaw
    real_rows = rows(run, turn, helen_faces(args.every))
    with tempfile.TemporaryDirectory() as tmp:
        rendered_rows = rows(run, turn, render_faces(run, args.identities, Path(tmp)))
    real, rendered = ratios(real_rows), ratios(rendered_rows)
    gaps = [abs(s["glance_yaw"] - yaw) for yaw, s in real_rows + rendered_rows if yaw < 75.0]
    print(f"first-pass yaw against the whole estimate's (faces within 75 degrees): median gap "
          f"{np.median(gaps):.1f}, 99th percentile {np.percentile(gaps, 99):.1f}, largest {max(gaps):.1f} degrees")
    fit_gaps = [abs(s["first_fit_yaw"] - yaw) for yaw, s in real_rows + rendered_rows]
    print(f"dense's first fit's yaw against the PnP yaw (all faces; dense.FRONTAL_YAW_MARGIN): median gap "
          f"{np.median(fit_gaps):.1f}, largest {max(fit_gaps):.1f} degrees")
    print("yaw bin  real faces  real fit/dense NME (%)  ratio   renders  render fit/dense NME (%)  ratio")
    for centre in sorted(set(real) | set(rendered)):
        r, s = real.get(centre), rendered.get(centre)
        left = f"{r[0]:10d}  {100 * r[1]:9.2f} / {100 * r[2]:5.2f}  {r[1] / r[2]:6.2f}" if r else " " * 35
        right = f"{s[0]:7d}  {100 * s[1]:10.2f} / {100 * s[2]:6.2f}  {s[1] / s[2]:6.2f}" if s else ""
        print(f"{centre - BIN_DEG / 2:3.0f}-{centre + BIN_DEG / 2:<3.0f} {left}   {right}")
    both = [c for c in real if c in rendered and real[c][0] >= args.min_faces]
    bias = float(np.mean([(real[c][1] / real[c][2]) / (rendered[c][1] / rendered[c][2]) for c in both]))
    # a bin the real photos fill is measured, not predicted (one odd render bin cannot move the switch there)
    predicted = [(c, real[c][1] / real[c][2] if c in both else rendered[c][1] / rendered[c][2] * bias)
                 for c in sorted(rendered)]
    print(f"renders' bias (real ratio / render ratio, bins {', '.join(f'{c:.0f}' for c in both)}): {bias:.3f}")
    print("predicted real fit/dense ratio: " + ", ".join(f"{c:.0f}: {p:.2f}" for c, p in predicted))
    for (c0, p0), (c1, p1) in zip(predicted, predicted[1:]):
        if p0 < 1.0 <= p1:
            print(f"switch to dense from {c0 + (1.0 - p0) / (p1 - p0) * (c1 - c0):.1f} degrees of yaw")
            return
    print("the predicted ratio never reaches 1: no switch")


if __name__ == "__main__":
    main()
