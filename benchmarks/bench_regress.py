"""The regressors' speed: ONNX Runtime forward at 128 and 256 px (batch 1), and a whole face.

Usage: python benchmarks/bench_regress.py [--repeats 50] [--threads 2]

Rows: the shipped models (128 px; the guided and two-view ones take 71 and 6 channels); the position-map network exported at 256 px (it is fully
convolutional; the trained weights from runs/cpu/last.pt when present); the seeds' full-width
network (configs/gpu.yaml) at 256 px with random weights (speed does not depend on the weights);
one face through ``Regressor.fit`` (crop, forward, map read-back, linear model fit) and through
``VolumeRegressor.fit``; the 3DDFA_V2 peer's landmarks on the same face, and every row's ratio to
it (the shared machine's speed varies by 2x between runs; ratios vary less). The 256 px rows need
torch (the train extra) to export. Target from issue 4: <= 15 ms at 256 px.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def forward_ms(path: Path, size: int, threads: int, repeats: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    channels = session.get_inputs()[0].shape[1]
    x = np.random.default_rng(0).random((1, channels, size, size), dtype=np.float32)
    return median_ms(lambda: session.run(None, {"image": x}), repeats)


def export_at(config: Path, size: int, folder: Path, checkpoint: Path | None) -> Path:
    import torch

    from facerecon.training.export import export_onnx
    from facerecon.training.network import build_network
    from facerecon.training.train import load_config
    torch.manual_seed(0)
    net = build_network(load_config(config)["model"])
    if checkpoint is not None and checkpoint.exists():
        net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    return export_onnx(net, size, folder / f"{config.stem}_{size}.onnx", check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from facerecon.assets import GUIDED_MODEL, TWOVIEW_MODEL
    from facerecon.regress import DEFAULT_MODEL
    from facerecon.vrn import DEFAULT_MODEL as VRN_MODEL
    rows = [("shipped regressor_uv128.onnx", 128, forward_ms(DEFAULT_MODEL, 128, args.threads, args.repeats)),
            ("shipped regressor_guided128.onnx (3+68 ch)", 128, forward_ms(GUIDED_MODEL, 128, args.threads, args.repeats)),
            ("shipped regressor_twoview128.onnx (6 ch)", 128, forward_ms(TWOVIEW_MODEL, 128, args.threads, args.repeats)),
            ("shipped regressor_vrn64.onnx (volume)", 128, forward_ms(VRN_MODEL, 128, args.threads, args.repeats))]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cpu = export_at(ROOT / "configs" / "cpu.yaml", 256, Path(tmp), ROOT / "runs" / "cpu" / "last.pt")
            rows.append(("cpu.yaml network (width 0.5) at 256", 256, forward_ms(cpu, 256, args.threads, args.repeats)))
            gpu = export_at(ROOT / "configs" / "gpu.yaml", 256, Path(tmp), None)
            rows.append(("gpu.yaml network (width 1.0) at 256", 256, forward_ms(gpu, 256, args.threads, args.repeats)))
    except ImportError as exc:
        print(f"(256 px rows skipped: {exc}; install the train extra)")

    from facerecon.camera import Camera
    from facerecon.detect import FaceDetector
    from facerecon.load import load_image
    from facerecon.model import load_model
    from facerecon.regress import Regressor
    from facerecon.vrn import VolumeRegressor
    image = load_image(ROOT / "facerecon" / "examples" / "astronaut.jpg")
    with FaceDetector() as detector:
        detection = detector.run(image).faces[0]
    regressor, volumetric = Regressor(load_model()), VolumeRegressor(load_model())
    camera = Camera.for_image(image.shape[1], image.shape[0])
    whole = median_ms(lambda: regressor.fit(image, detection, camera), max(10, args.repeats // 2))
    whole_vrn = median_ms(lambda: volumetric.fit(image, detection, camera), max(10, args.repeats // 2))
    try:   # the peer's whole landmark step on the same face: a yardstick that moves with the machine
        from facerecon.evaluation.peer import peer_landmarks68
        peer = median_ms(lambda: peer_landmarks68(image, detection.box), max(10, args.repeats // 2))
    except (FileNotFoundError, OSError) as exc:
        print(f"(peer row skipped: {exc})")
        peer = float("nan")

    print(f"ONNX Runtime {ort.__version__}, {args.threads} threads, batch 1, median of {args.repeats}")
    print(f"{'model':44s} {'input':>6s} {'median ms':>10s}")
    for name, size, ms in rows:
        print(f"{name:44s} {size:>6d} {ms:>10.2f}")
    print(f"{'one face, regress: crop + forward + read-back + linear fit':60s} {whole:>7.2f} ms")
    print(f"{'one face, vrn: crop + forward + surface + ICP + linear fit':60s} {whole_vrn:>7.2f} ms")
    print(f"{'one face, peer 3DDFA_V2 landmarks (same box)':60s} {peer:>7.2f} ms")
    for name, size, ms in rows:
        print(f"ratio {name} ({size} px) / peer: {ms / peer:.2f}")


if __name__ == "__main__":
    main()
