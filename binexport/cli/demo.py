"""``binexport demo``: every verb once on real weights, each step's report rendered as it is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import binexport.cli.options as opt
from binexport.cli.params import FiniteFloat, one_line, path
from binexport.cli.render import console, emit, render_inspect, render_onnx, render_pack, render_sizes
from binexport.cli.render_run import render_bench, render_verify
from binexport.data.synth import MAX_WIDTH

#: How each step of the demo is shown (its name in ``DemoReport.steps``).
RENDERERS = {
    "inspect": render_inspect,
    "pack": render_pack,
    "pack-bwn": render_pack,
    "pack-bwn-float16": render_pack,
    "to-onnx": render_onnx,
    "to-onnx-int8": render_onnx,
    "verify": render_verify,
    "bench": render_bench,
}


@click.command()
@click.option(
    "--checkpoint",
    type=path(),
    default=None,
    help="Use this model file (any format binexport reads) instead of the shipped McDonnell model.",
)
@click.option(
    "--synthetic",
    is_flag=True,
    help="Write a synthetic 204.5 MiB WRN-20 training checkpoint (random weights) instead: shows "
    "205 MB -> 3.5 MB packing, on synthetic images.",
)
@opt.images("Verify on this folder of labelled 32x32 PNGs instead of the shipped CIFAR-10 test images.")
@click.option(
    "--out",
    "out_dir",
    type=path(),
    default=Path("binexport-demo"),
    show_default=True,
    help="Folder for the demo's files (replaced files inside it only).",
)
@click.option(
    "--width",
    type=FiniteFloat(0, MAX_WIDTH, min_open=True),
    default=10,
    show_default=True,
    help=f"Width of the --synthetic WRN-20: a multiple of 1/16 in (0, {MAX_WIDTH}].",
)
@opt.binarized
@opt.calibrate("Training images for the int8 export (as to-onnx); --synthetic makes its own.")
@opt.data_root(
    "Data root whose CIFAR-10 training batches calibrate int8 (default: 192 of the 256 shipped training images)."
)
@opt.limit("Verify on the first N images only.")
@click.option(
    "--bench-seconds",
    type=FiniteFloat(0, 600),
    default=4.0,
    show_default=True,
    help="Timing budget per artifact of the closing benchmark (0 skips it).",
)
@opt.json_flag
@opt.json_out
def demo(
    checkpoint: Path | None,
    synthetic: bool,
    images: Path | None,
    out_dir: Path,
    width: float,
    binarized: bool | None,
    calibrate: str | None,
    data_root: Path | None,
    limit: int | None,
    bench_seconds: float,
    as_json: bool,
    json_out: Path | None,
) -> None:
    """Run the whole job on real weights: inspect, .bwn, ONNX, verify and bench McDonnell's 1-bit WRN-20-10.

    The model (his MATLAB CIFAR-10 file, MIT licence), 200 real CIFAR-10 test images and 256 real CIFAR-10
    training images (int8 calibrates on 192, validates on 64) ship with binexport; nothing is downloaded. --synthetic runs
    the older demo on a synthetic training checkpoint; --full-precision, the steps of a full-precision model
    (on a synthetic checkpoint trained without --binarize, or on --checkpoint).
    """
    from binexport.data.synth import make_arch
    from binexport.errors import InputError
    from binexport.verbs.demo import run_demo

    if synthetic and checkpoint is not None:
        raise InputError("give --synthetic or --checkpoint, not both")
    make_arch(20, width, 100)  # a --width off the 1/16 grid is refused before anything runs
    full_precision = binarized is False
    con = console()

    def show(name: str, report: Any) -> None:
        if not as_json:
            con.rule(f"[bold]binexport {name.replace('-int8', ' (int8)')}")
            RENDERERS[name](report)

    if not as_json:
        what = (
            "; writing a synthetic WRN-20 training checkpoint first"
            if checkpoint is None and (synthetic or full_precision)
            else ""
            if checkpoint
            else "; model: M. D. McDonnell's 1-bit WRN-20-10 for CIFAR-10 (MATLAB, MIT licence)"
        )
        con.print(f"binexport demo: files go to [bold]{out_dir}[/bold]{what}")
    report = run_demo(
        out_dir,
        checkpoint=checkpoint,
        synthetic=synthetic,
        width=width,
        images=images,
        calibrate=calibrate,
        data_root=data_root,
        bench_seconds=bench_seconds,
        limit=limit,
        full_precision=full_precision,
        binarized=binarized if checkpoint is not None else None,  # the synthetic checkpoints have a log.txt
        on_step=show,
    )
    emit(report, lambda r: _closing(r, full_precision), as_json, json_out)
    report.steps["verify"].raise_for_failures()


def _closing(report: Any, full_precision: bool) -> None:
    """The demo's last lines: a size table for a full-precision model, what ran on what, and its notes."""
    con = console()
    con.rule()
    if full_precision:
        render_sizes(report)
    con.print(f"model: {one_line(str(report.checkpoint))}; verified on {one_line(report.data)}", markup=False)
    for note in report.notes:
        con.print(note, markup=False)
    if report.synthetic_checkpoint:
        con.print(
            "The checkpoint has random weights, so accuracy means nothing here; agreement and logit "
            "differences do. Try: binexport demo (real weights) or --checkpoint CKPT --images DIR"
        )
