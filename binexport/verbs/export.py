"""``binexport to-onnx``: build the graph, prove it on ONNX Runtime against the PyTorch reference, then write it.

Validation is part of every export, not a warning: the temp file is checked
by ``onnx.checker`` (full_check) and run by ONNX Runtime on a fixed random
batch (plus held-out and labelled real images when there are some); only a file that passes the rule
:func:`binexport.validation.judge_export` picks for its images replaces the output,
otherwise no file is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binexport import check, formats
from binexport.calibrate import CALIBRATION_SIZE, PERCENTILE, Calibration, calibrate_ranges
from binexport.errors import CheckError, InputError
from binexport.fileio import check_output, write_atomic
from binexport.formats import onnx as fmt
from binexport.formats.onnx import int8 as int8_fmt
from binexport.model import Model
from binexport.report import Report
from binexport.validation import RANDOM_IMAGES, Validation, random_images, validate


@dataclass
class OrtExport:
    """The ``.ort`` phone file written beside the ONNX (``--ort-format``) and what ONNX Runtime's tools said."""

    output: str
    output_bytes: int
    onnx_bytes: int
    size_ratio: float  # .ort bytes / .onnx bytes
    config: str  # the reduced build's operator config (--include_ops_by_config)
    operators: list[str]
    style: str
    max_abs_diff_vs_onnx: float  # on the validation images, both run by ONNX Runtime
    mobile_usability: list[str] = field(default_factory=list)


@dataclass
class OnnxReport(Report):
    """What ``export_onnx`` did; the CLI renders it, ``--json`` prints ``to_dict()``."""

    input: str
    input_format: str
    input_layout: str
    input_bytes: int
    output: str
    output_bytes: int
    architecture: str
    num_classes: int
    binarized: bool
    weights: str
    opset: int
    batch: str | int
    input_kind: str
    validation: Validation
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    calibration: Calibration | None = None
    weight_zero_point: int | None = None  # int8 only: the block convs' weight zero point (ORT's kernel)
    ort: OrtExport | None = None  # --ort-format: the phone file beside the ONNX


def export_onnx(
    src: str | Path | Model,
    out: str | Path | None = None,
    *,
    weights: str | None = None,
    opset: int | None = None,
    batch: str | int = "dynamic",
    normalize_inside: bool = False,
    force: bool = False,
    images: str | Path | None = None,
    device: str = "cpu",
    binarized: bool | None = None,
    calibrate: str | Path | None = None,
    data_root: str | Path | None = None,
    calibration_size: int = CALIBRATION_SIZE,
    percentile: float = PERCENTILE,
    weight_zero_point: int | None = None,
    ort_format: bool = False,
) -> OnnxReport:
    """Export ``src`` (any file binexport reads, or a Model) to a validated ONNX file.

    Args:
        src: a model file or an in-memory :class:`Model` (then ``out`` is required).
        out: the ``.onnx`` path (default: beside ``src``).
        weights: ``1-bit`` (default for binarised models), ``float32`` (default for full precision), ``float16``,
            ``int8`` (needs ``calibrate``), ``int2`` (1-bit models: weights packed in the session's memory too).
        opset: ONNX opset, 13 or newer (None: 18; 25 for ``int2``, whose INT2 type needs it).
        batch: ``"dynamic"`` or a fixed batch size.
        normalize_inside: the graph takes uint8 NHWC pixels and normalises itself.
        force: replace an existing output.
        images: a folder of labelled PNGs to validate on as well (accuracy is reported).
        device: where ONNX Runtime validates ('cpu', 'cuda' or 'auto').
        binarized: override ``log.txt`` about ``--binarize``.
        calibrate: int8 only: ``CIFAR100`` / ``CIFAR10`` (the training split under ``data_root``), one CIFAR
            training file, or a folder of labelled PNGs. Never test images (a testing batch is refused).
        data_root: the torchvision data root for ``calibrate``.
        calibration_size: training images whose activations set the int8 ranges; up to
            :data:`binexport.calibrate.HELDOUT_IMAGES` more are held out to validate on.
        percentile: each activation's range is its ``percentile``-th percentile (100 = min/max).
        weight_zero_point: int8 only: one of ``formats.onnx.int8.WEIGHT_ZERO_POINTS`` (None: its ``DEFAULT_WEIGHT_ZERO_POINT``).
            1 stores the 1-bit weights as codes {0, 2} (ONNX Runtime's QGEMM, AMX on Intel Xeons that have it),
            0 as {-1, +1} (its symmetric direct convolution, no AMX); both give the same logits.
        ort_format: also write the ``.ort`` file for ONNX Runtime Mobile beside the output, its reduced-build
            operator config, and the mobile usability check's findings (:func:`write_ort`).

    Returns:
        An :class:`OnnxReport` with the validation numbers.

    Raises:
        InputError: bad options or inputs (e.g. ``1-bit`` weights for a full-precision model).
        CheckError: ONNX Runtime disagrees with the reference (the worst output is named); no file is left.

    Example:
        >>> r = binexport.export_onnx("model.packed.pth.tar", "model.onnx")   # doctest: +SKIP
        >>> r.validation.max_abs_diff < 1e-4                                   # doctest: +SKIP
        True
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(src, Model):
        model = src
        if out is None:
            raise InputError("exporting an in-memory model needs an output path")
    if not isinstance(src, Model):
        src = formats.resolve(src)  # a training run folder: its one checkpoint (the output goes beside it)
    dest = check_output(out if out is not None else formats.default_output(src, "onnx"), force)  # type: ignore[arg-type]  # a Model has an out
    if not isinstance(src, Model):
        model = formats.load(src, binarized=binarized)
    weights, opset, batch = fmt.check_options(model, weights, opset, batch)
    if (weights == "int8") != (calibrate is not None):
        raise InputError(
            "--weights int8 needs --calibrate SOURCE (training images: CIFAR100, CIFAR10 or a folder of PNGs)"
            if weights == "int8"
            else f"--calibrate is for --weights int8 only (this export is {weights})"
        )
    if weight_zero_point is not None and weights != "int8":
        raise InputError(f"--weight-zero-point is for --weights int8 only (this export is {weights})")
    zp_w = int8_fmt.check_zero_point(
        int8_fmt.DEFAULT_WEIGHT_ZERO_POINT if weight_zero_point is None else weight_zero_point
    )
    labelled = _labelled(images) if images is not None else None
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    options: dict[str, Any] = {}
    cal, heldout = None, None
    if weights == "int8":
        cal, heldout, options = calibrate_ranges(model, calibrate, data_root, calibration_size, percentile, images)  # type: ignore[arg-type]
        options["int8_weight_zero_point"] = zp_w
        timings["calibrate"] = cal.seconds
    data = fmt.write(model, weights=weights, opset=opset, batch=batch, normalize_inside=normalize_inside, **options)
    timings["build"] = time.perf_counter() - t - timings.get("calibrate", 0.0)
    result: list[Validation] = []

    def _check(tmp: Path) -> None:
        result.append(validate(tmp, model, weights, batch, normalize_inside, labelled, device, timings, heldout))

    t = time.perf_counter()
    write_atomic(dest, data, check=_check)
    timings["write"] = time.perf_counter() - t - timings.get("checker", 0.0) - timings.get("runtime", 0.0)
    in_bytes = model.source.size
    ort_report = None
    if ort_format:
        t = time.perf_counter()
        ort_report = write_ort(dest, weights, force)
        timings["ort"] = time.perf_counter() - t
    return OnnxReport(
        input=str(model.source.path if isinstance(src, Model) else src),
        input_format=model.source.format,
        input_layout=model.source.layout,
        input_bytes=in_bytes,
        output=str(dest),
        output_bytes=len(data),
        architecture=model.arch.name,
        num_classes=model.arch.num_classes,
        binarized=model.binarized,
        weights=weights,
        opset=opset,
        batch=batch,
        input_kind=fmt.input_kind(weights, normalize_inside, model.arch.input_bn, model.arch.normalization),
        validation=result[0],
        seconds=time.perf_counter() - t0,
        timings=timings,
        calibration=cal,
        weight_zero_point=zp_w if weights == "int8" else None,
        ort=ort_report,
    )


def write_ort(onnx_path: Path, weights: str, force: bool = False) -> OrtExport:
    """The ``.ort`` file and its operator config beside a validated ONNX file, each written atomically.

    The ``.ort`` is checked before it replaces anything: bounded (:func:`binexport.formats.ort.check_ort_bounds`)
    and run by ONNX Runtime on the validation batch beside its ``.onnx`` optimised the same way (without the
    x86-only NCHWc layout), held to the float32 tolerance: it is the same graph, so only float rounding may differ.

    Raises:
        InputError: an existing output without ``force``, or ONNX Runtime can't convert the graph.
        CheckError: the ``.ort`` does not classify like its ``.onnx``.
    """
    from binexport.formats import ort as ort_fmt
    from binexport.runtimes import select_input
    from binexport.runtimes.ort import open_session

    out = check_output(onnx_path.with_suffix(".ort"), force)
    cfg = check_output(onnx_path.with_suffix(ort_fmt.CONFIG_SUFFIX), force)
    data, config = ort_fmt.convert(onnx_path)
    raw = random_images(RANDOM_IMAGES)
    from binexport.data import normalize

    x = normalize(raw)
    want = open_session(str(onnx_path), disabled_optimizers=ort_fmt.DISABLED_OPTIMIZERS)  # as the .ort was made
    ref = want.logits(select_input(want.input_kind, raw, x))
    diff: list[float] = []
    ops: list[tuple[str, str]] = []

    def _check(tmp: Path) -> None:
        ops.extend(ort_fmt.check_ort_bounds(tmp))
        got_rt = open_session(tmp.read_bytes())
        got = got_rt.logits(select_input(got_rt.input_kind, raw, x))
        c = check.compare(got, ref, "float32", what=".ort")  # the same optimised graph: float rounding only
        diff.append(c.max_abs_logit_diff if c.max_abs_logit_diff is not None else float("inf"))
        if not c.passed:
            raise CheckError(f"the .ort file does not classify like {onnx_path.name}; no .ort written", c.problems)

    write_atomic(out, data, check=_check)
    write_atomic(cfg, config.encode())
    n_onnx = onnx_path.stat().st_size
    return OrtExport(
        output=str(out),
        output_bytes=len(data),
        onnx_bytes=n_onnx,
        size_ratio=len(data) / n_onnx,
        config=str(cfg),
        operators=[f"{d or 'ai.onnx'}.{op}" for d, op in ops],
        style=ort_fmt.STYLE,
        max_abs_diff_vs_onnx=diff[0],
        mobile_usability=ort_fmt.mobile_usability(onnx_path),
    )


def _labelled(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from binexport.data.png import load_labelled_folder

    return load_labelled_folder(folder)
