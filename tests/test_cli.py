"""The command line: outputs, exit codes and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLE


def cli(*args: str, cwd: Path | None = None, **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{"COLUMNS": "200", **env_vars})
    return subprocess.run([sys.executable, "-m", "facerecon", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_reconstructs_the_example_with_every_output(tmp_path):
    out = tmp_path / "out"
    result = cli("reconstruct", str(EXAMPLE), "-o", str(out), "--texture-size", "256", "--turntable")
    assert result.returncode == 0, result.stderr
    folder = out / "astronaut"
    for name in ("face0.obj", "face0.mtl", "face0.png", "face0.glb", "face0.ply", "face0.json",
                 "overlay.png", "face0_turntable.gif", "face0_turntable.mp4"):
        assert (folder / name).is_file(), name
    data = json.loads((folder / "face0.json").read_text())
    assert data["source"].endswith("astronaut.jpg")
    assert "1/1 photos" in result.stdout


def test_bad_photos_are_reported_and_the_rest_go_on(tmp_path, eval_dir):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    noface = tmp_path / "grey.png"
    from PIL import Image
    Image.new("RGB", (200, 200), (128, 128, 128)).save(noface)
    out = tmp_path / "out"
    result = cli("reconstruct", str(empty), str(text), str(noface), str(tmp_path), str(EXAMPLE),
                 "-o", str(out), "--format", "glb", "--texture-size", "128", "--no-overlay")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, result.stderr
    assert any("empty" in e for e in errors) and any("not an image" in e for e in errors)
    assert any("no face" in e for e in errors) and any("directory" in e for e in errors)
    assert "Traceback" not in result.stderr
    assert (out / "astronaut" / "face0.glb").is_file()
    assert not (out / "astronaut" / "face0.obj").exists()
    assert "1/5 photos" in result.stdout


def test_an_error_about_a_long_path_stays_one_line_on_a_narrow_terminal(tmp_path):
    folder = tmp_path / ("deep" * 30)
    folder.mkdir()
    missing = folder / "missing.jpg"
    result = cli("reconstruct", str(missing), "-o", str(tmp_path / "out"), COLUMNS="60")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0], result.stderr


@pytest.mark.parametrize("args,message", [
    (["--format", "fbx"], "--format"),
    (["--max-faces", "0"], "--max-faces"),
    (["--texture-size", "5"], "--texture-size"),
    (["--fov", "170"], "--fov"),
])
def test_wrong_arguments_exit_2_with_one_line(tmp_path, args, message):
    result = cli("reconstruct", str(EXAMPLE), "-o", str(tmp_path / "o"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_arguments_exit_2():
    assert cli("reconstruct").returncode == 2


def test_missing_model_is_one_line_not_a_traceback(tmp_path):
    result = cli("reconstruct", str(EXAMPLE), "-o", str(tmp_path / "o"), FACERECON_ICT_DIR=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "ICT-FaceKit model not found" in result.stderr and "FACERECON_ICT_DIR" in result.stderr


def fill_the_disk_after(monkeypatch, files: int) -> None:
    """Every write after the first ``files`` fails as on a full disk."""
    import errno

    from facerecon import export
    real, written = export.write_bytes, []

    def write_bytes(path, data):
        if len(written) >= files:
            with export.atomic_path(path) as temporary:     # the part that fits, as a real disk does
                temporary.write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real(path, data)

    monkeypatch.setattr(export, "write_bytes", write_bytes)


def test_a_full_disk_leaves_nothing_of_the_photos_output_set(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from facerecon.cli import app
    out = tmp_path / "out"
    earlier = out / "astronaut"
    earlier.mkdir(parents=True)
    (earlier / "face0.json").write_text("{}")       # an earlier run's set stays as it was
    fill_the_disk_after(monkeypatch, files=3)
    result = CliRunner().invoke(app, ["reconstruct", str(EXAMPLE), "-o", str(out), "--format", "obj,glb",
                                      "--texture-size", "64"])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["astronaut"]         # no temporary folder left
    assert [p.name for p in earlier.iterdir()] == ["face0.json"] and (earlier / "face0.json").read_text() == "{}"
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["reconstruct", str(EXAMPLE), "-o", str(out), "--format", "glb",
                                      "--texture-size", "64", "--no-overlay"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in earlier.iterdir()) == ["face0.glb", "face0.json"]


def test_a_full_disk_fails_one_batch_photo_and_leaves_none_of_its_files(tmp_path, monkeypatch):
    from facerecon.batch.runner import Job, PhotoWorker
    from facerecon.options import ReconstructOptions
    worker = PhotoWorker(ReconstructOptions(formats=("glb",), texture_size=64), threads=os.cpu_count() or 1)
    try:
        fill_the_disk_after(monkeypatch, files=1)
        record = worker.process(Job(EXAMPLE, "a/astronaut.jpg", "a/astronaut"), str(tmp_path))
    finally:
        worker.run.close()
    assert record["status"] == "error" and "No space left" in record["error"]
    assert list((tmp_path / "a").iterdir()) == []


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["reconstruct", "batch", "video"])
def test_an_unknown_method_exits_2_with_one_line(tmp_path, command):
    target = EXAMPLE.parent if command == "batch" else EXAMPLE
    result = cli(command, str(target), "-o", str(tmp_path / "o"), "--method", "fitt")
    assert result.returncode == 2
    assert "--method must be one of auto, fit, dense, regress, guided, vrn, got 'fitt'" in one_error_line(result)
    assert not (tmp_path / "o").exists()


def test_a_method_whose_network_is_not_installed_exits_1_saying_how_to_make_it(tmp_path):
    from facerecon import methods
    from facerecon.assets import TRAIN_CONFIG
    missing = [methods.spec(n) for n in methods.names() if methods.spec(n).unavailable() is not None]
    if not missing:
        pytest.skip("every method's network is installed here (trained locally)")
    for spec in missing:
        result = cli("reconstruct", str(EXAMPLE), "-o", str(tmp_path / "o"), "--method", spec.name)
        assert result.returncode == 1
        assert f"facerecon train {TRAIN_CONFIG[spec.networks[0].name]}" in one_error_line(result)
        assert not (tmp_path / "o").exists()


def test_video_takes_only_a_landmark_method(tmp_path):
    result = cli("video", str(EXAMPLE), "-o", str(tmp_path / "o"), "--method", "regress")
    assert result.returncode == 2 and "fit, dense" in one_error_line(result)


def test_version_flag_and_command_print_the_version():
    flag, command = cli("--version"), cli("version")
    assert flag.returncode == 0 and command.returncode == 0
    assert flag.stdout == command.stdout and flag.stdout.strip()[0].isdigit()


def test_batch_writes_what_reconstruct_writes_with_the_same_options(tmp_path):
    """One writer: the same files from `reconstruct` and `batch`, and batch honours --method,
    --fov, --units, --no-morph-targets and --turntable."""
    photos = tmp_path / "in"
    photos.mkdir()
    photo = photos / EXAMPLE.name
    photo.write_bytes(EXAMPLE.read_bytes())
    options = ["--format", "obj,glb", "--texture-size", "64", "--fov", "60", "--method", "dense",
               "--units", "mm", "--no-morph-targets", "--turntable"]
    single = cli("reconstruct", str(photo), "-o", str(tmp_path / "single"), *options)
    assert single.returncode == 0, single.stderr
    batch = cli("batch", str(photos), "-o", str(tmp_path / "batch"), *options)
    assert batch.returncode == 0, batch.stderr
    a, b = tmp_path / "single" / "astronaut", tmp_path / "batch" / "astronaut"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()) == [
        "face0.glb", "face0.json", "face0.mtl", "face0.obj", "face0.png", "face0_turntable.gif",
        "face0_turntable.mp4", "overlay.png"]
    ours, theirs = (json.loads((folder / "face0.json").read_text()) for folder in (a, b))
    for data in (ours, theirs):
        assert data["camera"]["fov_deg"] == pytest.approx(60.0) and data["camera"]["focal_source"] == "given"
        assert data["fit"]["method"] == "dense"
        assert data["mesh_files"]["units"] == {"obj": "mm", "glb": "m"}
        assert data["mesh_files"]["glb"]["morph_targets"] == 0
    assert ours.keys() == theirs.keys()
    assert ours["identity"] == pytest.approx(theirs["identity"], abs=1e-3)
