"""facerecon batch: the folder walk, the manifest, kill -9 and --resume for real, and Ray."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from PIL import Image

from helpers import EXAMPLE
from facerecon.batch.manifest import ManifestWriter, done_inputs, drop_records, read_records
from facerecon.batch.runner import find_jobs, run_batch
from facerecon.options import ReconstructOptions

FAST = ["--format", "glb", "--texture-size", "64", "--no-overlay"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facerecon", *args], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="200"), timeout=300)


def photo_tree(root: Path, eval_dir: Path, n_good: int) -> list[str]:
    """n_good photos with faces in nested folders, plus a broken file and a faceless image."""
    sources = [EXAMPLE] + sorted((eval_dir / "photos" / "deep3d").glob("0*.jpg"))
    good = []
    for k in range(n_good):
        rel = Path(f"set{k % 2}") / ("deep" if k % 3 else "") / f"p{k}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sources[k % len(sources)], root / rel)
        good.append(rel.as_posix())
    (root / "set0" / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (160, 160), (128, 128, 128)).save(root / "grey.png")
    return good


def test_folder_walk_mirrors_paths_and_skips_what_is_not_a_photo(tmp_path):
    for rel in ["a/b/x.jpg", "a/b/x.PNG", "a/y.webp", "z.jpeg", "a/notes.txt", ".hidden/h.jpg", "a/.h.jpg",
                "out/old/face0.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    jobs = find_jobs(tmp_path, tmp_path / "out")
    assert [(j.input, j.output) for j in jobs] == [
        ("z.jpeg", "z"), ("a/y.webp", "a/y"), ("a/b/x.PNG", "a/b/x_png"), ("a/b/x.jpg", "a/b/x_jpg")]
    assert all(j.source.is_absolute() for j in jobs)


def test_manifest_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    record = dict(input="a.jpg", status="ok", faces=1, output="a", timings_ms={}, error=None, worker={})
    with ManifestWriter(path) as writer:
        writer.append(record)
    with path.open("a") as f:
        f.write('{"input": "b.jpg", "stat')          # killed mid-write
    with ManifestWriter(path) as writer:
        writer.append({**record, "input": "c.jpg", "status": "error"})
    assert [r["input"] for r in read_records(path)] == ["a.jpg", "c.jpg"]
    assert done_inputs(path) == {"a.jpg"}


def test_resume_drops_the_records_of_the_photos_it_runs_again(tmp_path):
    path = tmp_path / "manifest.jsonl"
    record = dict(input="a.jpg", status="ok", faces=1, output="a", timings_ms={}, error=None, worker={})
    with ManifestWriter(path) as writer:
        for name, status in [("a.jpg", "ok"), ("b.jpg", "error"), ("c.jpg", "no_face")]:
            writer.append({**record, "input": name, "status": status})
    with path.open("a") as f:
        f.write('{"input": "d.jpg", "stat')          # killed mid-write
    assert drop_records(path, {"b.jpg", "c.jpg", "d.jpg"}) == 2
    assert [r["input"] for r in read_records(path)] == ["a.jpg"] and path.read_text().endswith("}\n")
    assert drop_records(path, {"b.jpg"}) == 0


def test_kill_dash_nine_then_resume_loses_and_repeats_nothing(tmp_path, eval_dir):
    src, out = tmp_path / "in", tmp_path / "out"
    good = photo_tree(src, eval_dir, 10)
    manifest = out / "manifest.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "facerecon", "batch", str(src), "-o", str(out), *FAST],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(read_records(manifest)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.02)
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)             # the main process only: its workers must follow
        proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, "pool workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = read_records(manifest)
    assert 3 <= len(before) < len(good) + 2, "the kill should land mid-run"
    done_before = {r["input"] for r in before if r["status"] == "ok"}
    assert done_before and all((out / Path(i).with_suffix("") / "face0.glb").is_file() for i in done_before)

    assert cli("batch", str(src), "-o", str(out), *FAST).returncode == 2    # no silent restart over a manifest
    result = cli("batch", str(src), "-o", str(out), "--resume", "--workers", "2", *FAST)
    assert result.returncode == 1, result.stderr                         # the broken and faceless photos
    records = read_records(manifest)
    ok = Counter(r["input"] for r in records if r["status"] == "ok")
    assert set(ok) == set(good) and max(ok.values()) == 1                # all done, none twice
    # grey.png runs first: it failed before the kill and again on --resume, and keeps one record
    assert "grey.png" in {r["input"] for r in before}
    assert Counter(r["input"] for r in records) == Counter(good + ["set0/broken.jpg", "grey.png"])
    assert all((out / Path(g).with_suffix("") / "face0.glb").is_file() for g in good)
    statuses = {r["input"]: r["status"] for r in records}
    assert statuses["set0/broken.jpg"] == "error" and statuses["grey.png"] == "no_face"
    assert len({r["worker"]["pid"] for r in records[len(before):]}) == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    skipped = re.search(r"skipped \(already done\)\W+(\d+)", result.stdout)
    assert skipped and int(skipped.group(1)) == len(done_before), result.stdout


def test_ray_engine_on_a_local_two_cpu_cluster(tmp_path, eval_dir):
    pytest.importorskip("ray")
    src, out = tmp_path / "in", tmp_path / "out"
    good = photo_tree(src, eval_dir, 3)
    seen = []
    options = ReconstructOptions(formats=("obj",), texture_size=64, overlay=True)
    summary = run_batch(src, out, options, workers=2, engine="ray", on_record=seen.append)
    assert summary.counts == {"ok": 3, "no_face": 1, "error": 1} and summary.faces >= 3
    assert {r["input"] for r in read_records(out / "manifest.jsonl")} == {r["input"] for r in seen}
    for g in good:
        folder = out / Path(g).with_suffix("")
        assert (folder / "face0.obj").is_file() and (folder / "overlay.png").is_file()
        assert json.loads((folder / "face0.json").read_text())["source"].endswith(g)
    assert len({r["worker"]["pid"] for r in seen}) == 2 and os.getpid() not in {r["worker"]["pid"] for r in seen}


def test_workers_start_with_their_share_of_threads(monkeypatch):
    """BLAS, OpenMP and numba size their pools from the environment at load: a spawned worker must
    see its share there, and the parent's environment comes back afterwards."""
    import subprocess
    import sys
    from facerecon.batch.runner import THREAD_VARIABLES, worker_threads
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with worker_threads(1):
        seen = subprocess.run([sys.executable, "-c", f"import os; print(*(os.environ[n] for n in {THREAD_VARIABLES!r}))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert seen == ["1"] * len(THREAD_VARIABLES)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OPENBLAS_NUM_THREADS" not in os.environ
