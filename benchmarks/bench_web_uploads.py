"""Server memory under parallel uploads of one huge photo (issue 18): `facerecon serve` in a
subprocess, N parallel uploads of a 79-megapixel PNG, its RSS sampled every 20 ms.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_web_uploads.py [--uploads 12]

Prints the RSS before, the peak while the uploads are checked (until the last answer), the RSS
once they are answered, and once every job has finished (the PNG has no face: each job fails, 422).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil


def big_png(path: Path, width: int = 10240, height: int = 7700) -> int:
    """A smooth colour gradient (no face), 78.8 MP, a few MB as PNG: under the 20 MB upload limit."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = x.astype(np.uint8)
    image[..., 1] = y.astype(np.uint8)
    image[..., 2] = ((x + y) / 2).astype(np.uint8)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "big.png"
        size = big_png(photo)
        data = photo.read_bytes()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "facerecon", "serve", "--port", str(port)],
                                  env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    httpx.get(f"{base}/api/reconstructions/none", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            process = psutil.Process(server.pid)
            before = process.memory_info().rss
            peak, stop = [before], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], process.memory_info().rss)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()

            def upload(k: int) -> httpx.Response:
                files = [("photos", (f"big{k}.png", data, "image/png"))]
                return httpx.post(f"{base}/api/reconstructions", files=files, timeout=600)

            with ThreadPoolExecutor(args.uploads) as threads:
                answers = list(threads.map(upload, range(args.uploads)))
            answered = time.perf_counter() - t0
            upload_peak = peak[0]
            after = process.memory_info().rss
            for answer in answers:
                while answer.status_code == 202 and httpx.get(f"{base}/api/reconstructions/{answer.json()['id']}",
                                                              timeout=60).json()["status"] in ("queued", "running"):
                    time.sleep(0.5)
            finished = time.perf_counter() - t0
            stop.set()
            sampler.join()
            settled = process.memory_info().rss
            mb = 2**20
            print(f"{args.uploads} parallel uploads of a {size / mb:.1f} MB, 78.8 MP PNG; "
                  f"answers {[a.status_code for a in answers]}")
            print(f"server RSS: before {before / mb:.0f} MB, peak until the last answer {upload_peak / mb:.0f} MB, "
                  f"at the last answer {after / mb:.0f} MB ({answered:.1f} s); peak overall {peak[0] / mb:.0f} MB, "
                  f"once every job finished {settled / mb:.0f} MB ({finished:.1f} s)")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
