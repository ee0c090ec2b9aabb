"""Run the chosen protocols with one Reconstructor and write the report."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import require
from ..methods import DEFAULT_METHOD, names as method_names, require as require_method

require("matplotlib", "eval", "facerecon evaluate")   # the plots come last: fail before the run starts
from ..pipeline import Reconstructor  # noqa: E402
from .hard_protocol import hard  # noqa: E402
from .headscan_protocol import headscan_protocol  # noqa: E402
from .identity_protocol import kira_protocol  # noqa: E402
from .multiview_protocol import multiview_protocol  # noqa: E402
from .objects_protocol import objects_protocol  # noqa: E402
from .protocols import (Context, ProtocolResult, aflw, aflw2000, ibug300w_protocol, photos68_protocol,  # noqa: E402
                        speed, synthetic_protocol)
from .report import write_report  # noqa: E402
from .scan_protocol import scan_protocol  # noqa: E402

PROTOCOLS: dict[str, Callable[[Context], ProtocolResult]] = {
    "aflw": aflw, "aflw2000": aflw2000, "photos68": photos68_protocol, "300w": ibug300w_protocol,
    "synthetic": synthetic_protocol, "scan": scan_protocol, "hard": hard, "speed": speed,
    "multiview": multiview_protocol, "kira": kira_protocol, "headscan": headscan_protocol,
    "objects": objects_protocol,
}


@dataclass(frozen=True)
class Evaluation:
    results: list[ProtocolResult]
    table: str            # Markdown results table (methods x protocols, with the peer's row)
    runtime_s: float


def evaluate(out_dir: Path, protocols: tuple[str, ...] = tuple(PROTOCOLS), methods: tuple[str, ...] = (DEFAULT_METHOD,),
             smoke: bool = False, with_peer: bool = True, identities: int | None = None,
             log: Callable[[str], None] = print) -> Evaluation:
    unknown = [p for p in protocols if p not in PROTOCOLS] + [m for m in methods if m not in method_names()]
    if unknown:
        raise ValueError(f"unknown protocol or method: {', '.join(unknown)}")
    for name in methods:   # a method whose network does not ship: one line (AssetError) before the run
        require_method(name)
    start = time.perf_counter()
    runners = {**PROTOCOLS, "synthetic": functools.partial(synthetic_protocol, n_identities=identities)}
    results = []
    with Reconstructor(texture_size=1024) as run:
        ctx = Context(run, Path(out_dir), tuple(methods), smoke, with_peer)
        for name in protocols:
            t0 = time.perf_counter()
            result = runners[name](ctx)
            result.seconds = time.perf_counter() - t0
            log(f"{name}: {result.seconds:.1f} s")
            results.append(result)
        runtime = time.perf_counter() - start
        table = write_report(results, Path(out_dir), run.model, runtime, smoke)
    return Evaluation(results, table, time.perf_counter() - start)
