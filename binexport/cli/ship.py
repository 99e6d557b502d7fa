"""The commands that ship a model: ``predict`` (a model on a user's pictures) and ``bundle`` (a Hub-ready folder)."""

from __future__ import annotations

from pathlib import Path

import click

import binexport.cli.options as opt
from binexport.cli.params import path, say_run_folder
from binexport.cli.render import emit
from binexport.cli.render_ship import render_bundle, render_predict


@click.command()
@click.argument("model", type=path(), callback=say_run_folder)
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=path())
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Classes listed per image.")
@opt.labels
@opt.one_runtime
@opt.device
@opt.binarized
@opt.json_flag
@opt.json_out
def predict(
    model: Path,
    images: tuple[Path, ...],
    top_k: int,
    labels: str | None,
    runtime: str,
    device: str,
    binarized: bool | None,
    as_json: bool,
    json_out: Path | None,
) -> None:
    """Name the classes MODEL sees in each IMAGE (PNG, any size up to 1024x1024: resized to 32x32).

    Any file binexport runs: checkpoint, packed, .bwn, .mat, ONNX, .ort. Images are resized by box (area)
    averaging when shrinking and bilinear interpolation when growing, then normalised as the model expects.
    """
    from binexport.verbs.predict import predict as run

    report = run(model, list(images), top_k=top_k, labels=labels, runtime=runtime, device=device, binarized=binarized)
    emit(report, render_predict, as_json, json_out)


@click.command()
@click.argument("model", type=path(), callback=say_run_folder)
@opt.output("The folder to create.", required=True)
@opt.dataset
@opt.data_root()
@opt.images("Folder of labelled 32x32 PNGs instead of --dataset.")
@opt.calibrate("Training images for onnx/model_int8.onnx (1-bit models), as to-onnx takes them.")
@opt.calibration_size
@opt.limit("Verify on the first N images only.")
@opt.labels
@click.option("--license", "license_", default=None, help="The model's licence for the card (default: unknown).")
@click.option("--repo-id", default="USER/MODEL", show_default=True, help="Hub repository for the printed command.")
@click.option("--bench", is_flag=True, help="Also benchmark every file on this CPU (bench.json).")
@opt.force
@opt.binarized
@opt.json_flag
@opt.json_out
def bundle(
    model: Path,
    output: Path,
    dataset: str | None,
    data_root: Path | None,
    images: Path | None,
    calibrate: str | None,
    calibration_size: int,
    limit: int | None,
    labels: str | None,
    license_: str | None,
    repo_id: str,
    bench: bool,
    force: bool,
    binarized: bool | None,
    as_json: bool,
    json_out: Path | None,
) -> None:
    """Write a Hub-ready folder: safetensors, .bwn, ONNX and .ort variants, config.json, a model card with the
    accuracy verify measured on your data, verify.json and SHA256SUMS; renamed into place only when all verified."""
    from binexport.verbs.bundle import bundle as run

    report = run(
        model,
        output,
        dataset=dataset,
        data_root=data_root,
        images=images,
        calibrate=calibrate,
        calibration_size=calibration_size,
        limit=limit,
        labels=labels,
        license=license_,
        bench=bench,
        force=force,
        binarized=binarized,
        repo_id=repo_id,
    )
    emit(report, render_bundle, as_json, json_out)
