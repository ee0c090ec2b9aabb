"""What ``facerecon batch`` shows a person: a progress bar with throughput and ETA, then a summary."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from ..options import ReconstructOptions
from .manifest import Record
from .runner import BatchSummary, Engine, run_batch


class ThroughputColumn(ProgressColumn):
    """Photos per second and faces per second, over the run so far."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0 or not task.completed:
            return Text("-- photos/s", style="progress.data.speed")
        faces = task.fields.get("faces", 0)
        return Text(f"{task.completed / elapsed:.2f} photos/s, {faces / elapsed:.2f} faces/s",
                    style="progress.data.speed")


def run_with_progress(input_dir: Path, out_dir: Path, options: ReconstructOptions, workers: int, engine: Engine,
                      address: str | None, resume: bool, console: Console) -> BatchSummary:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        ThroughputColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=console)
    # Started once the photos are counted; the clock then includes loading the workers' models.
    task = progress.add_task(f"batch ({engine}, {workers} workers)", total=None, start=False, faces=0)
    faces = 0

    def on_start(n: int) -> None:
        progress.update(task, total=n)
        progress.start_task(task)

    def on_record(record: Record) -> None:
        nonlocal faces
        faces += record["faces"]
        if record["status"] != "ok":
            progress.console.print(f"error: {record['error']}", markup=False, highlight=False, soft_wrap=True)
        progress.update(task, advance=1, faces=faces)

    with progress:
        return run_batch(input_dir, out_dir, options, workers, engine, address, resume, on_start, on_record)


def summary_table(summary: BatchSummary, out_dir: Path) -> Table:
    rate = summary.faces / summary.seconds if summary.seconds else 0.0
    table = Table(title=f"facerecon batch: {summary.counts['ok']}/{summary.found - summary.skipped} photos "
                        f"reconstructed into {out_dir}", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    for label, value in [("photos found", summary.found), ("skipped (already done)", summary.skipped),
                         ("ok", summary.counts["ok"]), ("no face", summary.counts["no_face"]),
                         ("error", summary.counts["error"]), ("faces", summary.faces),
                         ("time", f"{summary.seconds:.1f} s"), ("throughput", f"{rate:.2f} faces/s")]:
        table.add_row(label, str(value))
    return table
