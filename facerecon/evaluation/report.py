"""report.md + report.json + PNG plots from protocol results, and the README results table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from ..camera import Camera, rotation_from_angles
from ..errors import require
from ..model import FACE_AREA, HeadModel, face_area_triangles
from ..pipeline import draw_overlay
from ..render.lighting import frontal
from ..render.renderer import render_mesh
from .metrics import YAW_BINS
from .peer import PEER_NAME
from .protocols import EXACT_POINTS, MEAN_HEAD, PEER, ProtocolResult

HEADLINE_LABEL = {
    "aflw": "AFLW2000-3D-16 NME 2D, GT box (%)",
    "aflw2000": "AFLW2000-3D NME 2D, own box, mean of yaw bins (%)",
    "300w": "HELEN test NME / interocular, GT box (%)",
    "photos68": "held-out photos NME / interocular (%)",
    "synthetic": "synthetic dense RMSE (mm)",
    "scan": "scan RMSE after ICP (mm)",
    "hard": "small faces (50 px) NME 2D (%)",
    "speed": "median ms per face (detect+landmarks+fit / peer landmarks)",
    "multiview": "two james photos vs the better one: scan RMSE reduction (%)",
    "kira": "kira identity spread across 10 photos / between people",
    "headscan": "synthetic head scan: fitted identity RMSE (mm; the mean head in the notes)",
    "objects": "dino scan: silhouette IoU on 4 held-out views",
}


def _fmt(key: str, value) -> str:
    """Ratios as percentages, everything else as is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    if key.startswith(("nme", "detection", "rate", "reconstructed_rate", "landmark_nme")) or " nme" in key:
        return f"{100 * value:.2f}%"
    return f"{value:.3f}" if key.startswith("scale") else f"{value:.2f}"


def _json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _who_label(who: str) -> str:
    if who in (MEAN_HEAD, EXACT_POINTS):
        return f"reference: {who}"
    return PEER_NAME if who == PEER else f"facerecon ({who})"


def results_table(results: list[ProtocolResult]) -> str:
    """Markdown: one row per method (and the peer), one column per protocol's headline number."""
    who = list(dict.fromkeys(w for r in results for w in r.summary))
    head = "| method | " + " | ".join(HEADLINE_LABEL[r.name] for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for w in who:
        cells = []
        for r in results:
            key = r.peer_headline if w == PEER and r.peer_headline else r.headline
            cells.append(_fmt(key, r.summary.get(w, {}).get(key)))
        lines.append(f"| {_who_label(w)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary_table(result: ProtocolResult) -> str:
    who = list(result.summary)
    keys = list(dict.fromkeys(k for w in who for k in result.summary[w]))
    lines = ["| metric | " + " | ".join(_who_label(w) for w in who) + " |", "|---" * (len(who) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(_fmt(k, result.summary[w].get(k)) for w in who) + " |" for k in keys]
    return "\n".join(lines)


def plot_error_vs_yaw(results: dict[str, ProtocolResult], path: Path) -> bool:
    matplotlib = require("matplotlib", "eval", "facerecon evaluate")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [n for n in ("aflw", "synthetic") if n in results]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        res = results[name]
        if name == "aflw":
            for w in res.summary:
                yaw = [abs(r["yaw"]) for r in res.rows]
                ax.scatter(yaw, [100 * r[w]["nme2d"] for r in res.rows], label=_who_label(w), s=18)
            ax.set(xlabel="|yaw| (deg, ground truth)", ylabel="NME 2D (%)", title="AFLW2000-3D-16, GT boxes")
        else:
            for w, values in res.summary.items():
                keys = sorted((float(k.split()[-1]), k) for k in values if k.startswith("rmse_mm yaw"))
                ax.plot([y for y, _ in keys], [values[k] for _, k in keys], "o-", label=_who_label(w))
            ax.set(xlabel="yaw (deg)", ylabel="dense RMSE (mm)", title="synthetic renders")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def worst_cases(result: ProtocolResult, path: Path) -> bool:
    """The worst AFLW faces: our head and 68 points (overlay) with the ground truth in green."""
    tiles = []
    for (name, image_name), (face, truth) in result.extra.get("worst", []):
        tile = draw_overlay([face]).copy()
        for x, y in truth[:, :2]:
            cv2.circle(tile, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1, cv2.LINE_AA)
        row = next(r for r in result.rows if r["image"] == image_name)
        tile = cv2.resize(tile, (360, round(360 * tile.shape[0] / tile.shape[1])))
        cv2.putText(tile, f"{image_name} {name} NME {100 * row[name]['nme2d']:.1f}%", (6, 20),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        return False
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))
    return True


def error_heatmap(model: HeadModel, vertex_error_mm: np.ndarray, path: Path, size: int = 512) -> bool:
    """Per-vertex mean error (mm) on the neutral face area, rendered frontally with a colour bar."""
    matplotlib = require("matplotlib", "eval", "facerecon evaluate")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not np.any(vertex_error_mm):
        return False
    vertices = model.neutral[FACE_AREA]
    tris = face_area_triangles(model.triangles)
    top = float(np.percentile(vertex_error_mm, 98))
    colours = plt.get_cmap("inferno")(np.clip(vertex_error_mm / top, 0, 1))[:, :3]
    rotation = rotation_from_angles(0, 0, 0)
    camera = Camera.for_image(size, size)
    translation = np.array([0, 0, 45.0]) - rotation @ vertices.mean(0)
    image = render_mesh(vertices @ rotation.T.astype(np.float32) + translation.astype(np.float32), tris,
                        camera, vertex_colors=colours, sh=frontal(0.3, 0.7), background=(1.0, 1.0, 1.0),
                        supersample=2).image
    fig, ax = plt.subplots(figsize=(5.5, 5))
    shown = ax.imshow(image, cmap="inferno", vmin=0, vmax=top)
    ax.axis("off")
    ax.set_title("mean dense error on the face (synthetic), mm")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(results: list[ProtocolResult], out_dir: Path, model: HeadModel, runtime_s: float,
                 smoke: bool) -> str:
    """Write report.md, report.json and the plots into ``out_dir``; returns the results table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {r.name: r for r in results}
    plots = []
    if plot_error_vs_yaw(by_name, out_dir / "error_vs_yaw.png"):
        plots.append(("Error vs yaw", "error_vs_yaw.png"))
    if "aflw" in by_name and worst_cases(by_name["aflw"], out_dir / "worst_cases.png"):
        plots.append(("Worst AFLW2000-3D cases (ours: mesh and landmarks; ground truth: green dots)", "worst_cases.png"))
    if "synthetic" in by_name and error_heatmap(model, by_name["synthetic"].extra["vertex_error_mm"],
                                                 out_dir / "error_heatmap.png"):
        plots.append(("Mean dense error on the face (synthetic protocol)", "error_heatmap.png"))
    table = results_table(results)
    md = [f"# facerecon evaluation{' (smoke run)' if smoke else ''}", "",
          f"Total runtime {runtime_s:.0f} s. Protocols: {', '.join(r.name for r in results)}.", "",
          "## Results", "", table, ""]
    for r in results:
        md += [f"## {r.name} ({r.seconds:.0f} s)", "", *r.notes, "", _summary_table(r), ""]
    for title, name in plots:
        md += [f"## {title}", "", f"![{title}]({name})", ""]
    (out_dir / "report.md").write_text("\n".join(md))
    payload = {"runtime_s": runtime_s, "smoke": smoke, "yaw_bins": list(YAW_BINS), "results_table": table,
               "protocols": {r.name: {"seconds": r.seconds, "notes": r.notes, "summary": r.summary,
                                      "rows": r.rows} for r in results},
               "plots": [name for _, name in plots]}
    (out_dir / "report.json").write_text(json.dumps(_json_ready(payload), indent=1))
    return table
