"""Command line: ``facerecon reconstruct PHOTO... -o OUTDIR``. Thin: the work is in the pipeline."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import methods
from .errors import FaceReconError, require
from .options import FORMATS, ReconstructOptions, check_formats, check_texture_size, check_units

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help=f"Textured, metric 3D heads from ordinary photos. Methods (--method): {methods.describe()}")
err_console = Console(stderr=True, soft_wrap=True)   # an error stays one line on any terminal
# ReconstructOptions' fields as the command line names them, for its error messages
FLAGS = {"method": "--method", "fov_deg": "--fov", "texture_size": "--texture-size", "max_faces": "--max-faces",
         "formats": "--format", "units": "--units", "morph_targets": "--morph-targets", "overlay": "--overlay",
         "turntable": "--turntable"}
VIDEO_METHODS = methods.names(fits_landmarks=True)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def _fail_usage(message: str) -> None:
    _fail(message, 2)


def _checked(check, value, name: str):
    try:
        return check(value, name)
    except ValueError as exc:
        _fail_usage(str(exc))


def _texture_size_in_range(value: int) -> int:
    return _checked(check_texture_size, value, "--texture-size")


# The options of ReconstructOptions, written once for every command that takes them.
TextureSize = Annotated[int, typer.Option(callback=_texture_size_in_range,
                                          help="Texture width and height in pixels (64-4096).")]
Formats = Annotated[str, typer.Option("--format", help=f"Mesh formats: {','.join(FORMATS)}.")]
MaxFaces = Annotated[Optional[int], typer.Option(help="At most this many faces per photo (best first).")]
Turntable = Annotated[bool, typer.Option("--turntable", help="Also write a turntable GIF and MP4 per face.")]
Overlay = Annotated[bool, typer.Option(help="Write the photo with the meshes overlaid.")]
Method = Annotated[str, typer.Option(help=f"The reconstruction method. {methods.describe()}")]
Fov = Annotated[Optional[float], typer.Option(help="The photos' field of view across the longer side, degrees (default: each photo's EXIF focal length, else 40).")]
Units = Annotated[str, typer.Option(help="Units of the OBJ and PLY files: m, cm or mm (the GLB is always in metres, as glTF requires).")]
MorphTargets = Annotated[bool, typer.Option(help="The GLB carries the 53 ARKit-named expression shapes as morph targets and the pose; --no-morph-targets: a plain mesh.")]


def _options(**values) -> ReconstructOptions:
    """The options, checked (a usage error names the flag); the method must be able to run here."""
    try:
        options = ReconstructOptions(**values, names=FLAGS)
    except ValueError as exc:
        _fail_usage(str(exc))
    missing = methods.spec(options.method).unavailable()
    if missing is not None:
        _fail(missing)
    return options


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
    formats: Formats = "obj,glb,ply",
    max_faces: MaxFaces = None,
    texture_size: TextureSize = 1024,
    turntable: Turntable = False,
    overlay: Overlay = True,
    same_person: Annotated[bool, typer.Option("--same-person", help="The photos (or folders of photos) show one person: write one head (head.*) fitted to all of them into OUTDIR (with --method fit).")] = False,
    method: Method = methods.DEFAULT_METHOD,
    fov: Fov = None,
    units: Units = "m",
    morph_targets: MorphTargets = True,
) -> None:
    """Reconstruct a textured 3D head for every face in each photo."""
    options = _options(method=method, fov_deg=fov, texture_size=texture_size, max_faces=max_faces,
                       formats=formats, units=units, morph_targets=morph_targets, overlay=overlay,
                       turntable=turntable)
    if out_dir.exists() and not out_dir.is_dir():
        _fail_usage(f"--out {out_dir} exists and is not a folder")

    if same_person:  # one head from all the photos: the work is in facerecon.multiview
        if options.method not in (methods.DEFAULT_METHOD, "fit"):   # the joint fit is fit's, on every view
            _fail_usage(f"--same-person fits Face Mesh's landmarks of every view jointly (method fit): "
                        f"it takes no --method {options.method}")
        from .multiview import same_person_command
        raise typer.Exit(same_person_command(photos, out_dir, options.formats, texture_size, overlay, turntable,
                                             lambda line: err_console.print(line, markup=False, highlight=False),
                                             fov_deg=options.fov_deg, units=units, morph_targets=morph_targets))

    from .outputs import write_photo  # heavy imports after argument checks
    from .pipeline import Reconstructor

    rows, failures = [], 0
    with Reconstructor.for_options(options) as run, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("reconstructing", total=len(photos))
        for photo, name in zip(photos, _output_names(photos)):
            progress.update(task, description=f"reconstructing {photo.name}")
            t0 = time.perf_counter()
            try:
                written = write_photo(run, photo, out_dir / name, options)
                rows.append((str(photo), str(len(written.faces)), "ok", f"{(time.perf_counter() - t0):.2f} s"))
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


def _version() -> str:
    from importlib.metadata import version as pkg_version
    return pkg_version("facerecon")


def _print_version(value: bool) -> None:
    if value:
        print(_version())
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Textured, metric 3D heads from ordinary photos."""


@app.command()
def scan(
    inputs: Annotated[list[Path], typer.Argument(help="Photos, one folder of photos (a camera file beside them is used: transforms.json or *_par.txt), or one video.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder: scan.obj/.mtl/.png, scan.glb, scan.ply, scan.json, overlays/ (a person: head.* too; --turntable: scan_turntable.gif/.mp4).")],
    subject: Annotated[str, typer.Option(help="auto, human, animal or object (auto: human when most views show a face).")] = "auto",
    scale_mm: Annotated[Optional[float], typer.Option(help="The subject's longest side in mm: makes the mesh metric.")] = None,
    marker_mm: Annotated[Optional[float], typer.Option(help="Side in mm of a printed ArUco marker (4x4, ids 0-49) in view: makes the mesh metric.")] = None,
    formats: Formats = ",".join(FORMATS),
    units: Annotated[str, typer.Option(help="Units of the OBJ and PLY files when the scale is known: m, cm or mm.")] = "m",
    texture_size: TextureSize = 1024,
    max_side: Annotated[int, typer.Option(help="Views are read at most this many pixels on the longer side (cameras, texture).")] = 960,
    dense_side: Annotated[int, typer.Option(help="... and matched at most this size (dense depth).")] = 480,
    overlay: Annotated[bool, typer.Option(help="Write each view with the mesh overlaid (overlays/).")] = True,
    turntable: Annotated[bool, typer.Option("--turntable", help="Also write the subject turning (scan_turntable.gif and .mp4).")] = False,
) -> None:
    """Scan a still person, animal or object from many views: its textured mesh (structure from motion, dense depth, fusion); a person also gets the animatable ICT head fitted to it."""
    chosen = _checked(check_formats, formats, "--format")
    _checked(check_units, units, "--units")
    if out_dir.exists() and not out_dir.is_dir():
        _fail_usage(f"--out {out_dir} exists and is not a folder")
    if not 64 <= dense_side <= max_side <= 4096:
        _fail_usage(f"need 64 <= --dense-side <= --max-side <= 4096, got {dense_side} and {max_side}")
    for name, value in (("--scale-mm", scale_mm), ("--marker-mm", marker_mm)):
        if value is not None and not value > 0:
            _fail_usage(f"{name} must be positive, got {value:g}")
    from .scan import ScanSettings, prepare, reconstruct  # heavy imports after argument checks
    settings = ScanSettings(subject=subject, max_side=max_side, dense_side=dense_side, texture_size=texture_size,
                            scale_mm=scale_mm, marker_mm=marker_mm)
    say = lambda line: err_console.print(line, markup=False, highlight=False)   # noqa: E731
    t0 = time.perf_counter()
    try:
        views, cameras = prepare(inputs, settings, say)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err_console, transient=True) as progress:
            tasks: dict[str, int] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done)

            result = reconstruct(views, cameras, settings, advance)
            paths = result.save(out_dir, settings, chosen, units, overlay, turntable)
    except FaceReconError as exc:
        _fail(str(exc))
    scale = f"metric ({result.scale.source})" if result.scale.metric else "arbitrary scale"
    head = f"the ICT head fitted ({result.head.landmark_views} views with a face), " if result.head else ""
    print(f"facerecon scan: {len(cameras.keep)}/{len(views)} views, {len(result.mesh.faces)} triangles, {head}{scale}, "
          f"{time.perf_counter() - t0:.0f} s; {', '.join(p.name for p in paths.values())} in {out_dir}")


@app.command()
def version() -> None:
    """Print the version."""
    print(_version())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Photos reconstructed at once (each worker holds its own models).")] = 1,
    texture_size: TextureSize = 1024,
) -> None:
    """Serve the web app: drop a photo, watch the 3D head, download OBJ, GLB and JSON."""
    if not 1 <= port <= 65535:
        _fail_usage("--port must be between 1 and 65535")
    if workers < 1:
        _fail_usage("--workers must be at least 1")
    require("uvicorn", "web", "facerecon serve")  # the web stack loads only for this command
    from .web import WebSettings, create_app
    from .web.guards import run_server
    settings = WebSettings(workers=workers, texture_size=texture_size)
    try:
        web_app = create_app(settings)
    except RuntimeError as exc:  # the viewer's files are missing: set-up was not run
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    err_console.print(f"facerecon: serving on http://{host}:{port}/ (Ctrl+C stops)", markup=False, highlight=False)
    run_server(web_app, host, port, settings.header_timeout_s)


@app.command()
def evaluate(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.md, report.json, plots).")],
    protocols: Annotated[Optional[list[str]], typer.Option("--protocol", help="aflw, aflw2000, photos68, 300w, synthetic, scan, hard, speed, multiview, kira, headscan, objects (repeatable; default all).")] = None,
    methods: Annotated[str, typer.Option(help="Reconstruction methods, comma-separated.")] = methods.DEFAULT_METHOD,
    smoke: Annotated[bool, typer.Option("--smoke", help="A quick run on a few samples per protocol.")] = False,
    identities: Annotated[Optional[int], typer.Option(help="Synthetic identities (default 20; smoke 2).")] = None,
    peer: Annotated[bool, typer.Option(help="Run the 3DDFA_V2 peer side by side.")] = True,
) -> None:
    """Measure accuracy and speed on the shared evaluation data; write a report."""
    from .evaluation.runner import PROTOCOLS, evaluate as run_evaluation

    chosen = tuple(protocols or PROTOCOLS)
    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    try:
        result = run_evaluation(out_dir, chosen, names, smoke, peer, identities,
                                log=lambda line: err_console.print(line, markup=False, highlight=False))
    except ValueError as exc:
        _fail_usage(str(exc))
    print(result.table)
    print(f"\nFull runtime {result.runtime_s:.0f} s; report in {out_dir / 'report.md'}")


@app.command()
def batch(
    input_dir: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder: the input tree mirrored, plus manifest.jsonl.")],
    workers: Annotated[int, typer.Option(help="Worker processes (or Ray actors), one Reconstructor each.")] = 1,
    engine: Annotated[str, typer.Option(help="local (a process pool) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (--engine ray); default: a local one.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip the photos already ok in OUT_DIR/manifest.jsonl.")] = False,
    formats: Formats = "obj,glb,ply",
    max_faces: MaxFaces = None,
    texture_size: TextureSize = 1024,
    turntable: Turntable = False,
    overlay: Overlay = True,
    method: Method = methods.DEFAULT_METHOD,
    fov: Fov = None,
    units: Units = "m",
    morph_targets: MorphTargets = True,
) -> None:
    """Reconstruct every photo in a folder tree, with a resumable manifest (each photo's files as `reconstruct` writes them)."""
    options = _options(method=method, fov_deg=fov, texture_size=texture_size, max_faces=max_faces,
                       formats=formats, units=units, morph_targets=morph_targets, overlay=overlay,
                       turntable=turntable)
    if engine not in ("local", "ray"):
        _fail_usage(f"--engine must be local or ray, got {engine!r}")
    if address is not None and engine != "ray":
        _fail_usage("--address needs --engine ray")
    from .batch.console import run_with_progress, summary_table  # heavy imports after argument checks
    from .batch.runner import BatchError
    try:
        summary = run_with_progress(input_dir, out_dir, options, workers, engine, address, resume, err_console)
    except BatchError as exc:
        _fail_usage(str(exc))
    Console().print(summary_table(summary, out_dir))
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def video(
    clip: Annotated[Path, typer.Argument(help="A video (MP4, MOV, AVI, ...).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder: frames.csv, frames.json, overlay.mp4, head.glb.")],
    smoothing: Annotated[str, typer.Option(help="one-euro or none.")] = "one-euro",
    overlay: Annotated[bool, typer.Option(help="Write the clip with the head overlaid (overlay.mp4).")] = True,
    glb: Annotated[bool, typer.Option(help="Write the textured head with its animation (head.glb, metres).")] = True,
    method: Annotated[str, typer.Option(help=f"The landmark method that tracks the face: {', '.join(VIDEO_METHODS)}.")] = methods.DEFAULT_VIDEO_METHOD,
    fov: Annotated[Optional[float], typer.Option(help="The video's field of view across the longer side, degrees (default 40).")] = None,
    texture_size: TextureSize = 1024,
    turntable: Annotated[bool, typer.Option("--turntable", help="Also write the head turning (head_turntable.gif and .mp4).")] = False,
) -> None:
    """Track the main face of a video: one identity, per-frame pose and ARKit weights."""
    options = _options(method=method, fov_deg=fov, texture_size=texture_size, turntable=turntable)
    if options.method not in VIDEO_METHODS:
        _fail_usage(f"--method for a video must be one of {', '.join(VIDEO_METHODS)} (a landmark method), got {method!r}")
    if smoothing not in ("one-euro", "none"):
        _fail_usage(f"--smoothing must be one-euro or none, got {smoothing!r}")
    if not clip.is_file():
        _fail_usage(f"{clip} is not a file")
    from .batch.video import track_video, write_outputs  # heavy imports after argument checks
    from .pipeline import Reconstructor
    try:
        with Reconstructor.for_options(options) as run:
            track = track_video(clip, run, smoothing)
            write_outputs(track, run, clip, out_dir, overlay, glb, turntable=options.turntable)
    except FaceReconError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    found = sum(fit is not None for fit in track.fits)
    jitter = ", ".join(f"{k} {v:.3f}" for k, v in track.jitter_mm.items())
    print(f"facerecon video: the face in {found}/{len(track.fits)} frames written to {out_dir}; "
          f"frame-to-frame vertex motion (mm): {jitter}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML), e.g. configs/cpu.yaml.", show_default=False)],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last.pt.")] = False,
    steps: Annotated[Optional[int], typer.Option(help="Stop at this step instead of the config's (with --resume at or below the checkpoint's step: validate and export it as it is).")] = None,
) -> None:
    """Train a network (position map, volume or landmarks; see the config) and export it to ONNX (needs the train extra)."""
    if not config.is_file():
        _fail_usage(f"{config} is not a file")
    if steps is not None and steps < 1:
        _fail_usage("--steps must be at least 1")
    try:
        from .training.train import train as run_training
    except ImportError as exc:
        _fail_usage(f"training needs the train extra (pip install -e '.[train]'): {exc}")
    result = run_training(config, resume, err_console, max_steps=steps)
    print(f"facerecon train: {result.steps} steps, {result.elapsed_s / 60:.1f} min, loss {result.loss:.5f}, "
          f"validation {result.val_loss:.5f} ({result.val_mm:.2f} mm); model {result.onnx_path}")


def main() -> None:
    try:
        code = app()
    except FaceReconError as exc:  # e.g. the ICT model missing: one line, not a traceback
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        code = 1
    sys.exit(code)
