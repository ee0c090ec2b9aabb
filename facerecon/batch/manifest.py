"""The batch manifest: one JSON line per finished photo, appended and fsynced as each one finishes.

A run killed at any moment keeps every line written before the kill; at worst the last line is cut
short, and readers skip it (that photo is simply done again on ``--resume``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Literal, TypedDict

from ..export import write_bytes

Status = Literal["ok", "error", "no_face"]
MANIFEST_NAME = "manifest.jsonl"


class Record(TypedDict):
    input: str                      # path relative to the input folder, "/"-separated
    status: Status
    faces: int
    output: str                     # the photo's output folder, relative to the output folder
    timings_ms: dict[str, float]    # summed over the photo's faces, plus "total"
    error: str | None
    worker: dict[str, int]          # pid and peak RSS (MB) of the process that did it


def read_records(path: Path) -> list[Record]:
    """Every complete record in the manifest, in order; a torn last line is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def drop_records(path: Path, inputs: set[str]) -> int:
    """Rewrite the manifest (atomically) without the records of ``inputs``, and without a torn last
    line; returns how many records went."""
    records = read_records(path)
    kept = [r for r in records if r["input"] not in inputs]
    if path.is_file() and (len(kept) < len(records) or not path.read_bytes().endswith(b"\n")):
        write_bytes(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept).encode())
    return len(records) - len(kept)


def done_inputs(path: Path) -> set[str]:
    """Inputs with an ``ok`` record: what ``--resume`` skips."""
    return {r["input"] for r in read_records(path) if r.get("status") == "ok"}


class ManifestWriter:
    """Appends records durably: each one is on disk before :meth:`append` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        # A torn line from a killed run must not swallow the next record: start on a fresh line.
        if self._file.tell() > 0 and not self.path.read_bytes().endswith(b"\n"):
            self._file.write("\n")

    def append(self, record: Record) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
