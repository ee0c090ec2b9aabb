"""ONNX Runtime sessions for the shipped networks, their optimised graphs kept on disk.

Building a session optimises the network's graph (constant folding, fusions, the CPU's blocked
layouts), 0.03-0.2 s of CPU a network, four of them in a batch worker's start-up. The first
session of a network saves the optimised graph in ``assets.cache_dir()``; later ones load it with
ONNX Runtime's optimisations off, which runs the same graph, so the same outputs bit for bit. The
saved graph may hold the CPU's own layouts, so its file is named by the CPU (model and feature
flags) as well as by the network's bytes, ONNX Runtime's version and the session settings; one
that does not load is made again.
"""
from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .assets import cache_dir


def onnx_session(path: str | Path, threads: int = 1, config: Mapping[str, str] | None = None):
    """A CPU session of the network at ``path`` on ``threads`` intra-op threads, with the session
    config entries ``config``."""
    import onnxruntime as ort
    config = dict(config or {})

    def options() -> ort.SessionOptions:
        made = ort.SessionOptions()
        made.intra_op_num_threads = threads
        for key, value in config.items():
            made.add_session_config_entry(key, value)
        return made

    def session(source: Path, settings: ort.SessionOptions) -> ort.InferenceSession:
        return ort.InferenceSession(str(source), settings, providers=["CPUExecutionProvider"])

    path = Path(path)
    folder = cache_dir()
    if folder is None:
        return session(path, options())
    digest = hashlib.sha1(path.read_bytes())
    digest.update(repr((ort.__version__, _cpu(), threads, sorted(config.items()))).encode())
    optimised = folder / f"onnx-{path.stem}-{digest.hexdigest()}.onnx"
    if optimised.is_file():
        settings = options()
        settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return session(optimised, settings)
        except Exception:   # a damaged file (ONNX Runtime raises its own types): made again below
            pass
    from .export import atomic_path   # imported here: export imports much that a session does not need
    settings = options()
    settings.log_severity_level = 3   # not the warning that the saved graph is for this CPU: it is named so
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(optimised) as temporary:
            settings.optimized_model_filepath = str(temporary)
            made = session(path, settings)
        return made
    except Exception:   # an unwritable folder (OSError, or ONNX Runtime's error where it cannot save)
        return session(path, options())


@lru_cache(maxsize=1)
def _cpu() -> str:
    """The CPU's model and feature flags (Linux), else what ``platform`` says of it."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [line for line in fh if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
