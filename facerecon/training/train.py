"""``facerecon train CONFIG.yaml [--resume]``: train a network, export it to ONNX.

``model.kind`` chooses it: ``posmap`` (the position-map regressor, default), ``volume`` (VRN) or
``landmarks`` (Face Mesh's network fine-tuned from ``model.init`` on ``landmark_data``'s samples;
``data.real_every`` mixes in distilled real HELEN training crops (``data.marks``: with their hand-marked
points, ``landmark_data.RealMarks``), ``data.repose_every`` real photos
re-posed with exact targets: ``repose.ReposeSettings``, fitted once into ``data.repose_cache``,
default ``<output>/repose``; ``model.uncertainty: {init_sigma_px, lr_factor}`` adds a per-point
uncertainty head, ``OnnxModule.add_uncertainty_head``, trained at ``lr_factor`` times the rate).

Config (YAML; see configs/cpu.yaml): ``seed``, ``output`` (run folder), ``threads``, ``workers``,
``model`` (network.build_network arguments plus ``input_size``), ``data`` (DataSettings fields plus
``textures``: how many skin textures to derive), ``train`` (batch_size, steps, max_minutes, lr,
lr_drop_at, lr_drop, checkpoint_every, val_every, val_samples), ``export`` (the ONNX path).

The run folder gets ``last.pt`` (model, optimiser, step, elapsed time; rewritten every
``checkpoint_every`` steps and at the end), ``log.csv``, ``loss.png`` and ``model.onnx``. Adam with
the seeds' learning-rate drop: the rate falls by ``lr_drop`` (10x) after ``lr_drop_at`` of the
steps or of the time budget, whichever comes first; ``max_minutes`` bounds the wall time.
Batches are samples ``step * batch_size ...`` of a seeded stream, so a resumed run sees the same data.
"""
from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..assets import shared_dir
from ..errors import FaceReconError, require
from ..export import atomic_path
from ..posmap import uv_layout
from .data import DataSettings, SyntheticFaces, bake_real_textures, texture_library
from .network import build_network, count_parameters, to_device_layout
from .repose import ReposeSettings, fit_photos

CSV_FIELDS = ("step", "elapsed_s", "lr", "loss", "val_loss", "val_mm")


@dataclass
class TrainResult:
    steps: int
    elapsed_s: float
    loss: float
    val_loss: float
    val_mm: float
    onnx_path: Path | None


def load_config(path: str | Path) -> dict:
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    cfg.setdefault("model", {})
    cfg.setdefault("data", {})
    cfg.setdefault("train", {})
    return cfg


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the map of weight * squared error, normalised by the weights (PRNet's loss)."""
    return (weights[:, None] * (pred - target) ** 2).sum() / (3 * weights.sum())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _validation_set(dataset: SyntheticFaces, count: int):
    """Fixed validation samples (another seed, no flip, occluders or colour change): images, targets
    (position maps or volumes), cm per crop unit, and the true face and head/neck points."""
    val = SyntheticFaces(dataset.textures, dataset.settings, dataset.seed + 100_003)
    images, targets, scales, points = [], [], [], []
    for i in range(count):
        s = val.sample(i, flip=False, occlude=False, augment_colour=False)
        image = s.image.transpose(2, 0, 1) / np.float32(255.0)
        images.append(image if s.extra is None else np.concatenate([image, s.extra]))
        targets.append(dataset.target(s.points) if hasattr(dataset, "target") else s.posmap.transpose(2, 0, 1))
        scales.append(s.cm_per_unit)
        points.append(s.points[:9409])
    return (torch.from_numpy(np.stack(images).astype(np.float32)), torch.from_numpy(np.stack(targets)),
            np.array(scales), points)


def evaluate_maps(net, images, maps, scales, layout, weights) -> tuple[float, float]:
    """(weighted loss, mean error in mm of the face vertices read back from the predicted maps)."""
    net.eval()
    with torch.no_grad():
        device = next(net.parameters()).device
        pred = torch.cat([net(to_device_layout(images[i:i + 16].to(device))).cpu()
                          for i in range(0, len(images), 16)])
    net.train()
    loss = float(weighted_mse(pred, maps, weights.expand(len(pred), -1, -1)))
    face = layout.reliable & (layout.vertices <= 9408)
    errs = []
    for p, t, scale in zip(pred.numpy().transpose(0, 2, 3, 1), maps.numpy().transpose(0, 2, 3, 1), scales):
        diff = layout.sample(p)[face] - layout.sample(t)[face]
        errs.append(np.linalg.norm(diff, axis=1).mean() * scale * 10.0)
    return loss, float(np.mean(errs))


def _save_checkpoint(path: Path, net, opt, step: int, elapsed: float, dropped: bool, cfg: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "elapsed_s": elapsed, "lr_dropped": dropped, "config": cfg}, tmp)


def _read_log(path: Path, upto_step: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto_step]


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def plot_losses(rows: list[dict], path: Path) -> None:
    matplotlib = require("matplotlib", "train", "facerecon train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].semilogy(steps, [float(r["loss"]) for r in rows], label="train (running mean)")
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"] not in ("", "nan")]
    if val:
        ax[0].semilogy(*zip(*val), "o-", label="validation")
        ax[1].plot([v[0] for v in val], [float(r["val_mm"]) for r in rows if r["val_loss"] not in ("", "nan")], "o-")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("loss (weighted MSE, or BCE for volumes)")
    ax[0].legend()
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("validation face error (mm)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def train(config_path: str | Path, resume: bool = False, console: Console | None = None,
          max_steps: int | None = None) -> TrainResult:
    """Run (or resume) the training described by a YAML config. ``max_steps`` overrides the
    config's step count (tests)."""
    console = console or Console(stderr=True)
    for module in ("onnx", "matplotlib"):   # the export and the loss plot come last: fail before training
        require(module, "train", "facerecon train")
    cfg = load_config(config_path)
    tcfg, mcfg = cfg["train"], cfg["model"]
    seed = int(cfg.get("seed", 0))
    _seed_everything(seed)
    torch.set_num_threads(int(cfg.get("threads", 2)))
    out = Path(cfg.get("output", "runs/train"))
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "last.pt", out / "log.csv"

    dcfg = dict(cfg["data"])
    n_textures = int(dcfg.pop("textures", 24))
    base_size = int(dcfg.pop("base_texture_size", 256))
    # folders of real photos (relative to the shared data folder) whose faces give skin atlases
    photo_folders = tuple(shared_dir() / f for f in dcfg.pop("texture_photos", []))
    real_every = int(dcfg.pop("real_every", 0))
    marks_config = dcfg.pop("marks", None)
    identity_weight = float(dcfg.pop("identity_weight", 0.0))   # identity_loss.py; landmarks only
    identity_ridge = dcfg.pop("identity_ridge", None)
    repose = ReposeSettings.from_config(dcfg)
    settings = DataSettings.from_dict({**dcfg, "input_size": int(mcfg.get("input_size", 128))})
    bases = bake_real_textures(base_size, photo_folders)
    console.print(f"{len(bases)} real skin atlases ({base_size} px) baked from the example photo"
                  + (f" and {', '.join(map(str, photo_folders))}" if photo_folders else ""))
    textures = texture_library(bases, n_textures, seed)
    kind = mcfg.get("kind", "posmap")
    volume = kind == "volume"
    device = torch.device(cfg.get("device", "cpu"))
    if volume:
        from .volumetric import VolumeFaces, evaluate_volumes, volume_loss
        dataset = VolumeFaces(textures, settings, seed, int(mcfg.get("depth_bins", 64)))
        loss_fn = volume_loss
    elif kind == "landmarks":
        from .identity_loss import IDENTITY_RIDGE
        from .landmark_data import (LandmarkFaces, RealMarks, evaluate_landmarks, held_out_photos, landmark_loss,
                                    landmarks_only, marks_from_dense, real_faces)
        from .onnx_module import OnnxModule
        real_marks = RealMarks.from_config(marks_config)
        holdout = real_marks.holdout_every if real_marks else 0
        helen_train = shared_dir() / "eval" / "300w-helen-afw" / "helen_train"
        real = real_faces(helen_train, holdout) if real_every else []
        console.print(f"{len(real)} real HELEN training crops, one sample in {real_every}" if real else "synthetic only")
        if real_marks and real:
            console.print(f"{sum(f.marks is not None for f in real)} of them with their hand-marked points "
                          f"(every {holdout}th face held out)")
        reposed = []
        if repose.every:
            folders = [shared_dir() / f for f in repose.photos]
            reposed = fit_photos(folders, Path(repose.cache or out / "repose"), repose, console)
            held_out = held_out_photos(helen_train, holdout)
            reposed = [f for f in reposed if f.photo not in held_out]
            if not reposed:
                raise FaceReconError(f"data.repose_every: no usable face in {', '.join(map(str, folders))}")
            console.print(f"{len(reposed)} fitted real faces (held-out photos left out), one sample in "
                          f"{repose.every} re-posed")
        dataset = LandmarkFaces(textures, settings, seed, real, real_every, reposed=reposed, repose=repose,
                                marks=real_marks, identity_matrices=identity_weight > 0,
                                identity_ridge=IDENTITY_RIDGE if identity_ridge is None else float(identity_ridge))
        loss_fn = partial(landmark_loss, identity_weight=identity_weight)
        if real_marks:
            placement = marks_from_dense(dataset.model)
            loss_fn = partial(loss_fn, real_marks=real_marks, placement=placement)
            console.print(f"68 marks placed by the dense points: residual median {np.median(placement.residual_px):.2f} px "
                          f"(jaw {np.median(placement.residual_px[:17]):.2f}), confidence {placement.confidence().min():.2f}"
                          f"-{placement.confidence().max():.2f}")
        landmark_net = OnnxModule(mcfg["init"])
        if mcfg.get("uncertainty"):
            landmark_net.add_uncertainty_head(math.log(float(mcfg["uncertainty"].get("init_sigma_px", 2.0))))
    else:
        dataset = SyntheticFaces(textures, settings, seed)
        loss_fn = weighted_mse
    if kind != "landmarks":
        layout = uv_layout(dataset.model, settings.input_size)
        weights = torch.from_numpy(layout.weights)[None]

    net = (landmarks_only(landmark_net) if kind == "landmarks" else build_network(mcfg))
    net = net.to(device, memory_format=torch.channels_last)
    lr = float(tcfg.get("lr", 1e-3))
    head = landmark_net.head_parameters() if kind == "landmarks" else []
    # a new head starts far from its optimum: its own learning rate (a multiple of the network's)
    head_ids = {id(p) for p in head}
    head_factor = float((mcfg.get("uncertainty") or {}).get("lr_factor", 1.0))
    groups = [{"params": [p for p in net.parameters() if id(p) not in head_ids], "factor": 1.0}]
    if head:
        groups.append({"params": head, "factor": head_factor})
    opt = torch.optim.Adam(groups, lr=lr)
    steps = int(max_steps or tcfg.get("steps", 1000))
    batch = int(tcfg.get("batch_size", 16))
    budget_s = float(tcfg.get("max_minutes", 1e9)) * 60.0
    drop_at, drop = float(tcfg.get("lr_drop_at", 0.75)), float(tcfg.get("lr_drop", 0.1))
    step, elapsed0, dropped = 0, 0.0, False
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed0, dropped = state["step"], state["elapsed_s"], state["lr_dropped"]
        console.print(f"resumed from {ckpt_path} at step {step} ({elapsed0 / 60:.1f} min done)")
    elif resume:
        console.print(f"no checkpoint at {ckpt_path}; starting afresh")
    rows = _read_log(log_path, step) if step else []
    console.print(f"network: {count_parameters(net):,} parameters; {steps} steps of {batch}; "
                  f"budget {budget_s / 60:.0f} min")
    if kind == "landmarks":
        val_images, val_maps, val_scales = dataset.validation_set(int(tcfg.get("val_samples", 64)))
    else:
        val_images, val_maps, val_scales, val_points = _validation_set(dataset, int(tcfg.get("val_samples", 64)))

    def validate() -> tuple[float, float]:
        if kind == "landmarks":
            return evaluate_landmarks(net, val_images, val_maps, val_scales)
        if volume:
            return evaluate_volumes(net, val_images, val_maps, val_points, val_scales)
        return evaluate_maps(net, val_images, val_maps, val_scales, layout, weights)

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=range(step * batch, dataset.length),
        num_workers=int(cfg.get("workers", 1)), persistent_workers=int(cfg.get("workers", 1)) > 0,
        prefetch_factor=4 if int(cfg.get("workers", 1)) > 0 else None)
    every_ckpt, every_val = int(tcfg.get("checkpoint_every", 200)), int(tcfg.get("val_every", 200))
    start = time.perf_counter()
    running = None
    val_loss, val_mm = float("nan"), float("nan")

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - start

    def set_lr(value: float) -> None:
        for group in opt.param_groups:
            group["lr"] = value * group["factor"]

    set_lr(lr * drop if dropped else lr)
    net.train()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.5f}  val {task.fields[val]:.2f} mm  lr {task.fields[lr]:.0e}"),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task("training", total=steps, completed=step, loss=float("nan"),
                                 val=float("nan"), lr=opt.param_groups[0]["lr"])
        for images, maps, *extra in loader:
            if step >= steps or elapsed() >= budget_s:
                break
            if not dropped and (step >= drop_at * steps or elapsed() >= drop_at * budget_s):
                dropped = True
                set_lr(lr * drop)
                console.print(f"step {step}: learning rate {lr:g} -> {lr * drop:g}")
            pred = net(to_device_layout(images.to(device)))
            loss = loss_fn(pred, maps.to(device), *(e.to(device) for e in extra))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_value = loss.item()
            running = loss_value if running is None else 0.98 * running + 0.02 * loss_value
            last = step >= steps or elapsed() >= budget_s
            row = None
            if step % every_val == 0 or last:
                val_loss, val_mm = validate()
                row = {"val_loss": f"{val_loss:.6f}", "val_mm": f"{val_mm:.3f}"}
            if step % 10 == 0 or row or last:
                rows.append({"step": step, "elapsed_s": f"{elapsed():.1f}", "lr": opt.param_groups[0]["lr"],
                             "loss": f"{running:.6f}", **(row or {"val_loss": "", "val_mm": ""})})
            if step % every_ckpt == 0 or last:
                _save_checkpoint(ckpt_path, net, opt, step, elapsed(), dropped, cfg)
                _write_log(log_path, rows)
            progress.update(task, completed=step, loss=running, val=val_mm, lr=opt.param_groups[0]["lr"])
    if not np.isfinite(val_loss):   # a resumed run already at its last step: score what it exports
        val_loss, val_mm = validate()
    running = float("nan") if running is None else running
    _save_checkpoint(ckpt_path, net, opt, step, elapsed(), dropped, cfg)
    _write_log(log_path, rows)
    plot_losses(rows, out / "loss.png")
    console.print(f"trained {step} steps in {elapsed() / 60:.1f} min: loss {running:.5f}, "
                  f"validation {val_loss:.5f} ({val_mm:.2f} mm)")
    if kind == "landmarks" and landmark_net.has_uncertainty:
        from .landmark_data import uncertainty_calibration
        ratio, rank = uncertainty_calibration(net, val_images, val_maps)
        console.print(f"uncertainty on the validation set: mean |r|^2 / 2 sigma^2 {ratio:.2f} (1: calibrated), "
                      f"rank correlation of sigma with |r| {rank:.2f}")
    onnx_path = None
    metadata = {"config": Path(config_path).name, "steps": str(step), "train_minutes": f"{elapsed() / 60:.1f}",
                "val_mm": f"{val_mm:.3f}"}
    if cfg.get("export") and kind == "landmarks":
        from .onnx_module import export_module
        onnx_path = export_module(landmark_net.cpu(), out / "model.onnx", settings.input_size,
                                  {"kind": "landmarks", **metadata})
    elif cfg.get("export"):
        from .export import export_onnx
        onnx_path = export_onnx(net.cpu(), settings.input_size, out / "model.onnx",
                                output_name="volume" if volume else "posmap",
                                metadata={"kind": "volume" if volume else "posmap", **metadata})
    if onnx_path is not None:
        target = Path(cfg["export"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "landmarks":   # the shipped form: fp16 weights (points move by under 0.1 px)
            export_module(landmark_net.cpu(), target, settings.input_size, {"kind": "landmarks", **metadata}, half=True)
        else:
            from .export import shrink_onnx
            shrink_onnx(onnx_path, target)     # the shipped form: int8 weights, a quarter of the size
        console.print(f"exported {target} ({target.stat().st_size / 1e6:.1f} MB)")
        onnx_path = target
    return TrainResult(step, elapsed(), float(running or np.nan), val_loss, val_mm, onnx_path)
