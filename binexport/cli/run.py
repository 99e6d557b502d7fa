"""The commands that run artifacts on images: ``verify`` and ``bench``, over one run-with-progress body.

Both check a ``--json-out`` path before the run (a bad path fails now, not after a 10,000-image run), show
progress bars on a terminal's stderr while the library runs, then emit the report like every command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import binexport.cli.options as opt
from binexport.cli.params import FiniteFloat, path
from binexport.cli.render import emit, stderr_console
from binexport.cli.render_run import render_bench, render_verify
from binexport.runtimes.base import Progress
from binexport.verbs.bench import DEFAULT_BATCH_SIZE as BENCH_BATCH
from binexport.verbs.bench import DEFAULT_SECONDS as BENCH_SECONDS
from binexport.verbs.verify import DEFAULT_BATCH_SIZE as VERIFY_BATCH


def run_with_progress(
    run: Callable[[Progress], Any],
    render: Callable[[Any], None],
    as_json: str | bool | None,
    json_out: Path | None,
) -> Any:
    """Call ``run(progress)`` under progress bars, then emit its report; the shared body of verify and bench.

    Returns:
        The report, for a command to act on after it is shown (``verify`` raises for failed rows).
    """
    from binexport.fileio import check_output

    show_json, json_out = opt.json_outputs(as_json, json_out)
    if json_out is not None:
        check_output(json_out, force=True)
    bars = _bars()
    tasks: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done, total=total)

    with bars:
        report = run(progress)
    emit(report, render, show_json, json_out)
    return report


def _bars() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bars

    con = stderr_console()  # bars only on a terminal: a piped stderr carries error lines and nothing else
    return Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=con,
        transient=True,
        disable=not con.is_terminal,
    )


@click.command()
@opt.artifacts_argument
@opt.dataset
@opt.data_root()
@opt.download
@opt.images("Folder of labelled 32x32 PNGs (NAME_LABEL.png, or LABEL/ subfolders) instead of --dataset.")
@click.option(
    "--reference",
    type=path(),
    default=None,
    help="Checkpoint the artifacts came from (default: the first ARTIFACT that is not ONNX).",
)
@opt.device
@opt.batch_size(VERIFY_BATCH, "Images per forward call")
@opt.limit()
@opt.json_flag_or_old_path
@opt.json_out
@opt.runtime
@opt.precision
@opt.binarized
def verify(
    artifacts: tuple[Path, ...],
    dataset: str | None,
    data_root: Path | None,
    download: bool,
    images: Path | None,
    reference: Path | None,
    device: str,
    batch_size: int,
    limit: int | None,
    as_json: str | None,
    json_out: Path | None,
    runtime: tuple[str, ...],
    precision: str,
    binarized: bool | None,
) -> None:
    """Check that every ARTIFACT classifies like the reference: accuracy, agreement, logit differences, speed.

    Exit 0 when every artifact meets its tolerance, 1 when any fails, 2 on bad input. The --json-out
    report is written even when rows fail.
    """
    from binexport.verbs.verify import verify as library_verify

    def run(progress: Progress) -> Any:
        return library_verify(
            list(artifacts),
            dataset=dataset,
            data_root=data_root,
            download=download,
            images=images,
            reference=reference,
            device=device,
            batch_size=batch_size,
            limit=limit,
            binarized=binarized,
            runtime=runtime,
            precision=precision,
            progress=progress,
        )

    run_with_progress(run, render_verify, as_json, json_out).raise_for_failures()


@click.command()
@opt.artifacts_argument
@opt.batch_size(BENCH_BATCH, "Batch of the throughput measurement (latency is measured at batch 1)")
@click.option(
    "--seconds",
    type=FiniteFloat(0, 3600, min_open=True),
    default=BENCH_SECONDS,
    show_default=True,
    help="Timing budget per artifact, over interleaved rounds.",
)
@opt.device
@opt.threads
@opt.json_flag_or_old_path
@opt.json_out
@opt.runtime
@opt.precision
def bench(
    artifacts: tuple[Path, ...],
    batch_size: int,
    seconds: float,
    device: str,
    threads: int,
    as_json: str | None,
    json_out: Path | None,
    runtime: tuple[str, ...],
    precision: str,
) -> None:
    """Measure what each ARTIFACT costs to deploy: size, load time, peak memory, latency, throughput.

    Each artifact runs in its own process on the runtime it deploys with; ratios compare with the first.
    """
    from binexport.verbs.bench import bench as library_bench

    def run(progress: Progress) -> Any:
        return library_bench(
            list(artifacts),
            batch_size=batch_size,
            seconds=seconds,
            device=device,
            threads=threads,
            runtime=runtime,
            precision=precision,
            progress=progress,
        )

    run_with_progress(run, render_bench, as_json, json_out)
