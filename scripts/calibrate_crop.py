"""Choose the first landmark crop's size for the detector's boxes (``landmarks.DETECTION_ROI_SCALES``).

The first crop is a square of ``DETECTION_ROI_SCALES[0]`` times the detection box's longer side,
centred on the box, with ``DETECTION_ROI_SCALES[1:]`` tried while the network is unsure of the face;
the final crop then comes from the network's own points. For each candidate first scale (the
fallbacks keep their ratios to it, 0.8 and 1.33), on every 4th face of helen_train (calibration
only) detected by our detector: the share of faces Face Mesh accepts and the 68-point NME (outer
interocular and box) of the fitted head; on synthetic renders at |yaw| 60 and 80 (8 identities,
pitch 0): the share accepted. Run: ``python scripts/calibrate_crop.py``.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import facerecon.landmarks as landmarks  # noqa: E402
from facerecon.evaluation import synthetic  # noqa: E402
from facerecon.evaluation.datasets import ibug300w  # noqa: E402
from facerecon.evaluation.metrics import box_size, interocular, nme  # noqa: E402
from facerecon.evaluation.protocols import default_camera, base_texture, match_detection  # noqa: E402
from facerecon.load import load_image  # noqa: E402
from facerecon.pipeline import Reconstructor  # noqa: E402

CANDIDATES = (1.2, 1.35, 1.5, 1.7)
FALLBACK_RATIOS = (0.8, 1.33)


def main() -> None:
    faces = ibug300w(subsets=("helen_train",))[::4]
    with Reconstructor() as run, tempfile.TemporaryDirectory() as tmp:
        samples = []
        for s in faces:
            image = load_image(s.image_path)
            samples.append((s, image, match_detection(run.detect(image).faces, s.box)))
        heads = synthetic.make_heads(run.model, base_texture(run), 8)
        renders = [synthetic.render_sample(run.model, h, yaw, 0.0, 256, Path(tmp))
                   for h in heads for yaw in (-80.0, -60.0, 60.0, 80.0)]
        renders = [(r, run.detect(r.image).faces) for r in renders]
        print(f"helen_train: {len(samples)} faces, {sum(d is not None for _, _, d in samples)} detected; "
              f"renders: {len(renders)}, {sum(bool(f) for _, f in renders)} detected")
        results, accepted = {}, {}
        for first in CANDIDATES:
            landmarks.DETECTION_ROI_SCALES = (first, *(first * r for r in FALLBACK_RATIOS))
            scores = []
            for s, image, det in samples:
                face = run.reconstruct_face(image, det, default_camera(image), with_texture=False) if det else None
                pred = face.landmarks68()[0] if face is not None else None
                scores.append((nme(pred, s.points, interocular(s.points)), nme(pred, s.points, box_size(s.points)))
                              if pred is not None else None)
            results[first] = scores
            accepted[first] = {60: [], 80: []}
            for r, found in renders:
                ok = bool(found) and run.estimator.estimate(r.image, found[0]) is not None
                accepted[first][int(abs(r.yaw_deg))].append(ok)
    common = [i for i in range(len(samples)) if all(results[f][i] is not None for f in CANDIDATES)]
    print(f"first scale | helen accepted | NME io, NME box on the {len(common)} faces all accept | "
          "renders |yaw| 60 / 80 accepted")
    for first in CANDIDATES:
        io, box = np.mean([results[first][i] for i in common], axis=0)
        print(f"{first:.2f} | {sum(r is not None for r in results[first])}/{len(samples)} | {100 * io:.2f}%, "
              f"{100 * box:.2f}% | {np.mean(accepted[first][60]):.0%} / {np.mean(accepted[first][80]):.0%}")

if __name__ == "__main__":
    main()
