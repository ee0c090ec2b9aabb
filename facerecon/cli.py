"""Command line: ``facerecon reconstruct PHOTO... -o OUTDIR``. Thin: the work is in the pipeline."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import FaceReconError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Textured, metric 3D heads from ordinary photos.")
FORMATS = ("obj", "glb", "ply")
err_console = Console(stderr=True)


def _fail_usage(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


def _parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        _fail_usage(f"--format must be a comma-separated subset of {','.join(FORMATS)}, got {text!r}")
    return formats


def _output_names(photos: list[Path]) -> list[str]:
    """One output folder name per photo, unique even when two photos share a file name."""
    names, seen = [], {}
    for photo in photos:
        stem = photo.stem or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


@app.command()
def reconstruct(
    photos: Annotated[list[Path], typer.Argument(help="Photos (JPEG, PNG, WebP, BMP, TIFF).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per photo).")],
    formats: Annotated[str, typer.Option("--format", help="Mesh formats: obj,glb,ply.")] = "obj,glb,ply",
    max_faces: Annotated[Optional[int], typer.Option(help="At most this many faces per photo (best first).")] = None,
    texture_size: Annotated[int, typer.Option(help="Texture width and height in pixels.")] = 1024,
    turntable: Annotated[bool, typer.Option("--turntable", help="Also write a turntable GIF and MP4 per face.")] = False,
    overlay: Annotated[bool, typer.Option(help="Write the photo with the meshes overlaid.")] = True,
) -> None:
    """Reconstruct a textured 3D head for every face in each photo."""
    chosen = _parse_formats(formats)
    if max_faces is not None and max_faces < 1:
        _fail_usage("--max-faces must be at least 1")
    if not 64 <= texture_size <= 4096:
        _fail_usage("--texture-size must be between 64 and 4096")
    if out_dir.exists() and not out_dir.is_dir():
        _fail_usage(f"--out {out_dir} exists and is not a folder")

    from .pipeline import Reconstructor, draw_overlay  # heavy imports after argument checks
    from .render.visualize import save_turntable, turntable_frames
    from .export import write_image

    rows, failures = [], 0
    with Reconstructor(texture_size=texture_size, max_faces=max_faces) as run, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("reconstructing", total=len(photos))
        for photo, name in zip(photos, _output_names(photos)):
            progress.update(task, description=f"reconstructing {photo.name}")
            t0 = time.perf_counter()
            try:
                faces = run(photo)
                target = out_dir / name
                for face in faces:
                    face.save(target, formats=chosen)
                    if turntable:
                        frames = turntable_frames(face.model, face.vertices, face.texture)
                        save_turntable(frames, target / f"face{face.index}_turntable.gif",
                                       target / f"face{face.index}_turntable.mp4")
                if overlay:
                    write_image(target / "overlay.png", draw_overlay(faces))
                rows.append((str(photo), str(len(faces)), "ok", f"{(time.perf_counter() - t0):.2f} s"))
            except FaceReconError as exc:
                failures += 1
                err_console.print(f"error: {exc}", markup=False, highlight=False)
                rows.append((str(photo), "0", str(exc).split(": ", 1)[-1], f"{(time.perf_counter() - t0):.2f} s"))
            except Exception as exc:  # one bad photo must not stop the others
                failures += 1
                err_console.print(f"error: {photo}: {type(exc).__name__}: {exc}", markup=False, highlight=False)
                rows.append((str(photo), "0", f"{type(exc).__name__}", f"{(time.perf_counter() - t0):.2f} s"))
            progress.advance(task)

    table = Table(title=f"facerecon: {len(photos) - failures}/{len(photos)} photos reconstructed into {out_dir}")
    for col in ("photo", "faces", "status", "time"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if failures:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as pkg_version
    print(pkg_version("facerecon"))


def _silence_native_logs() -> None:
    """Send file descriptor 2 to /dev/null and keep Python's stderr on a copy of it.

    MediaPipe's C++ code (TensorFlow Lite, absl) writes INFO/WARNING lines straight to fd 2 before
    any log level can be set. Set FACERECON_NATIVE_LOGS=1 to see them.
    """
    if os.environ.get("FACERECON_NATIVE_LOGS") == "1":
        return
    sys.stderr.flush()
    python_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(python_stderr, "w", buffering=1)


def main() -> None:
    _silence_native_logs()
    sys.exit(app())
