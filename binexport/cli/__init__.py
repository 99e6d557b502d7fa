"""The ``binexport`` command: parse options, call one library function, render its report.

Only this layer imports rich. Library errors become one line on stderr:
exit 2 for bad input, 1 for a failed check. Heavy imports (torch, onnx) happen
inside commands so ``--help`` and ``--version`` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from binexport import __version__
from binexport.cli.render import (
    console,
    render_bench,
    render_inspect,
    render_onnx,
    render_pack,
    render_sizes,
    render_verify,
    stderr_console,
)
from binexport.data import DATASET_NAMES
from binexport.errors import BinexportError
from binexport.formats import PACK_FORMATS
from binexport.formats.bwn import ENCODING_CHOICES
from binexport.formats.bwn import WEIGHTS_CHOICES as BWN_WEIGHTS
from binexport.formats.onnx import DEFAULT_OPSET, WEIGHT_ALIASES, WEIGHTS
from binexport.runtimes import DEVICES
from binexport.verbs.bench import DEFAULT_BATCH_SIZE as BENCH_BATCH
from binexport.verbs.bench import DEFAULT_SECONDS as BENCH_SECONDS


class _Group(click.Group):
    """Turns binexport's own errors into one line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BinexportError as e:
            click.echo(f"binexport: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            click.echo(f"binexport: error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "), err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="binexport")
def main() -> None:
    """Export and compress 1-bit Wide ResNets (McDonnell, ICLR 2018) for deployment."""


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


_mode_option = click.option("--binarized/--full-precision", "binarized", default=None,
                            help="Whether the checkpoint was trained with --binarize (default: read log.txt beside it).")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(file: Path, binarized: bool | None, as_json: bool) -> None:
    """Show what FILE is: format, architecture, parameters, where its bytes go, and output sizes."""
    from binexport import inspect as run

    report = run(file, binarized=binarized)
    if as_json:
        _echo_json(report.to_dict())
        return
    render_inspect(report)


@main.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: beside the input).")
@click.option("--format", "fmt", metavar="|".join(PACK_FORMATS), default=PACK_FORMATS[0], show_default=True,
              help="Output format: 'packed' (the published layout) or 'bwn'.")
@click.option("--encoding", metavar="|".join(ENCODING_CHOICES), default=None,
              help="bwn only: how 1-bit tensors are stored: best (default), packed "
              "(every tensor memory-mappable), rans or rans-ref (see docs/FORMAT.md).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="bwn only: a user metadata entry (repeatable).")
@click.option("--weights", type=click.Choice(BWN_WEIGHTS), default=None,
              help="bwn only, full-precision models: float32 (default, lossless), or float16/bfloat16 (conv weights "
              "rounded and stored half, declared lossy; BN statistics stay float32).")
@_mode_option
@click.option("--binarize-anyway", is_flag=True,
              help="Binarise a full-precision model (changes its outputs); needed for --format packed.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pack(ckpt: Path, output: Path | None, fmt: str, encoding: str | None, meta: tuple[str, ...], weights: str | None,
         binarized: bool | None, binarize_anyway: bool, force: bool, as_json: bool) -> None:
    """Pack CKPT to one bit per binarised weight (.bwn: floats for a full-precision model), re-read, check every bit."""
    from binexport import pack as run
    from binexport.errors import InputError

    options: dict[str, Any] = {"encoding": encoding} if encoding is not None else {}
    if weights is not None:
        options["weights"] = weights
    if meta:
        bad = [m for m in meta if "=" not in m or not m.split("=", 1)[0]]
        if bad:
            raise InputError(f"--meta {bad[0]!r}: expected KEY=VALUE, e.g. --meta dataset=CIFAR-100")
        options["metadata"] = dict(m.split("=", 1) for m in meta)
    report = run(ckpt, output, format=fmt, binarized=binarized, binarize_anyway=binarize_anyway, force=force,
                 **options)
    if as_json:
        _echo_json(report.to_dict())
        return
    render_pack(report)


@main.command("to-onnx")
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .onnx file (default: beside INPUT).")
@click.option("--weights", type=click.Choice([*WEIGHTS, *WEIGHT_ALIASES]), default=None,
              help="1-bit (default for 1-bit models; 'packed' is its old name): 1 bit per binarised weight, turned "
                   "into +-scale by standard ops when the session starts; float32 (default for full precision): "
                   "plain weights. Both take float32 NCHW and give float32 logits. float16: half-precision weights "
                   "and compute for GPUs; takes float16 NCHW and gives float16 logits.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset (13 or newer).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--normalize-inside", is_flag=True,
              help="Graph takes raw uint8 NHWC (N, 32, 32, 3) images and applies the CIFAR normalisation itself "
                   "(default input: normalised NCHW, as in training).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Also validate on this folder of labelled 32x32 PNGs (NAME_LABEL.png) and report accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def to_onnx(input_file: Path, output: Path | None, weights: str | None, opset: int, batch: str,
            normalize_inside: bool, images: Path | None, force: bool, binarized: bool | None, as_json: bool) -> None:
    """Export INPUT to ONNX, validated on ONNX Runtime against the PyTorch reference before it is written."""
    from binexport import export_onnx

    r = export_onnx(input_file, output, weights=weights, opset=opset, batch=batch,
                    normalize_inside=normalize_inside, force=force, images=images, binarized=binarized)
    if as_json:
        _echo_json(r.to_dict())
        return
    render_onnx(r)


@main.command()
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Choice(DATASET_NAMES, case_sensitive=False), default=None,
              help="Standard test set, in torchvision's layout under --data-root.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder holding cifar-100-python/ or cifar-10-batches-py/ (default: $BINEXPORT_DATA, else "
                   "~/.cache/binexport/data).")
@click.option("--download", is_flag=True, help="Fetch the official archive (md5-checked) if the test set is absent.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Folder of labelled 32x32 PNGs (NAME_LABEL.png, or LABEL/ subfolders) instead of --dataset.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Checkpoint the artifacts came from (default: the first ARTIFACT that is not ONNX).")
@click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True,
              help="auto takes CUDA where PyTorch sees a GPU; cuda fails if any runtime would not really use it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report here as JSON (written even when rows fail).")
@_mode_option
def verify(artifacts: tuple[Path, ...], dataset: str | None, data_root: Path | None, download: bool,
           images: Path | None, reference: Path | None, device: str, batch_size: int, limit: int | None,
           json_out: Path | None, binarized: bool | None) -> None:
    """Check that every ARTIFACT classifies like the reference: accuracy, agreement, logit differences, speed.

    Exit 0 when every artifact meets its tolerance, 1 when any fails, 2 on bad input.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from binexport import verify as run
    from binexport._fileio import check_output

    if json_out is not None:
        check_output(json_out, force=True)  # a bad --json path fails now, not after a 10,000-image run
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=stderr_console(), transient=True)
    tasks: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done)

    with bars:
        report = run(list(artifacts), dataset=dataset, data_root=data_root, download=download, images=images,
                     reference=reference, device=device, batch_size=batch_size, limit=limit, binarized=binarized,
                     progress=progress)
    render_verify(report)
    if json_out is not None:
        report.write_json(json_out)
    report.raise_for_failures()


def _bars() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    con = stderr_console()  # bars only on a terminal: a piped stderr carries error lines and nothing else
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=con, transient=True, disable=not con.is_terminal)


@main.command()
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 4096), default=BENCH_BATCH, show_default=True,
              help="Batch of the throughput measurement (latency is measured at batch 1).")
@click.option("--seconds", type=click.FloatRange(0, 3600, min_open=True), default=BENCH_SECONDS, show_default=True,
              help="Timing budget per artifact, over interleaved rounds.")
@click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True,
              help="auto takes CUDA where PyTorch sees a GPU.")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Intra-op threads per runtime (0: one per core).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report here as JSON.")
def bench(artifacts: tuple[Path, ...], batch_size: int, seconds: float, device: str, threads: int,
          json_out: Path | None) -> None:
    """Measure what each ARTIFACT costs to deploy: size, load time, peak memory, latency, throughput.

    Each artifact runs in its own process on the runtime it deploys with; ratios compare with the first.
    """
    from binexport import bench as run
    from binexport._fileio import check_output

    if json_out is not None:
        check_output(json_out, force=True)
    bars = _bars()
    task = bars.add_task("timing (interleaved)", total=None)
    with bars:
        report = run(list(artifacts), batch_size=batch_size, seconds=seconds, device=device, threads=threads,
                     progress=lambda done, total: bars.update(task, completed=done, total=total))
    render_bench(report)
    if json_out is not None:
        report.write_json(json_out)


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Use this checkpoint (any layout binexport reads) instead of making a synthetic one.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Verify on this folder of labelled 32x32 PNGs instead of synthetic CIFAR-100-layout images.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("binexport-demo"), show_default=True,
              help="Folder for the demo's files (replaced files inside it only).")
@click.option("--width", type=float, default=10, show_default=True, help="Width of the synthetic WRN-20.")
@click.option("--full-precision", "full_precision", is_flag=True,
              help="Demo a full-precision model: synthetic checkpoint without --binarize; .bwn float32 and float16, "
              "ONNX float32, verify, and a size table.")
@click.option("--json", "as_json", is_flag=True, help="Print every step's report as one JSON document.")
def demo(checkpoint: Path | None, images: Path | None, out_dir: Path, width: float, full_precision: bool,
         as_json: bool) -> None:
    """Run the whole job on a built-in default: inspect, pack, .bwn, ONNX and verify a WRN-20-10 checkpoint.

    With no --checkpoint it writes a 204.5 MiB training checkpoint in the training code's exact layout
    (random weights, log.txt saying it was binarised); nothing is downloaded.
    """
    from binexport.verbs.demo import run_demo

    renderers = {"inspect": render_inspect, "pack": render_pack, "pack-bwn": render_pack,
                 "pack-bwn-float16": render_pack, "to-onnx": render_onnx, "verify": render_verify}
    con = console()

    def show(name: str, report: Any) -> None:
        if not as_json:
            con.rule(f"[bold]binexport {name}")
            renderers[name](report)

    if not as_json:
        con.print(f"binexport demo: files go to [bold]{out_dir}[/bold]"
                  + ("" if checkpoint else "; writing a synthetic WRN-20-10 training checkpoint first"))
    report = run_demo(out_dir, checkpoint=checkpoint, width=width, images=images, full_precision=full_precision,
                      on_step=show)
    if as_json:
        _echo_json(report.to_dict())
    else:
        con.rule()
        if full_precision:
            render_sizes(report)
        con.print(f"checkpoint: {report.checkpoint}; verified on {report.data}")
        if report.synthetic_checkpoint:
            con.print("The checkpoint has random weights, so accuracy means nothing here; agreement and logit "
                      "differences do. Try: binexport demo --checkpoint CKPT --images DIR")
    report.steps["verify"].raise_for_failures()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
