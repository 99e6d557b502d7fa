"""An export's self-check: the file against the PyTorch reference on random and real images, before it is written.

``to-onnx`` runs the temp file on ONNX Runtime (or a runtime a test passes in) and the reference on the same
images through :func:`binexport.runtimes.stream_logits`, as ``verify`` does, and judges the logits with
:func:`judge_export`: the one comparison, under the rule that fits the images (real held-out
ones where there are enough, else a margin-aware rule that near-ties, which flip with the CPU's int8 kernel,
cannot decide). The report names the rule, the number of images and whether they were real or random.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from binexport import check
from binexport.errors import CheckError, InputError
from binexport.model import Model

if TYPE_CHECKING:
    from binexport.runtimes import Runtime

#: images in the fixed random validation batch: every weight reaches every logit, so a few images catch any
#: encoding error; few, because the PyTorch reference of WRN-20-10 costs ~0.2 s per image on two cores
RANDOM_IMAGES = 8
#: The random images are a random 8x8 colour grid, box-blurred up to 32x32: smooth like photos, so int8
#: activations stay within the ranges calibrated on real images. Uniform noise drives them past, and int8 clips:
#: on WRN-20-10 its logit error reached 0.78x the logits' spread (0.23x on these), as much as a wrong scale.
RANDOM_GRID = 8
_SEED = 20180226  # fixed, so every export of the same model is checked on the same batch


@dataclass
class Validation:
    """How the exported graph compared with the PyTorch reference."""

    provider: str
    random_images: int
    labelled_images: int
    max_abs_diff: float
    tolerance: float
    worst_output: str
    agreement: float
    min_agreement: float
    accuracy: float | None = None
    reference_accuracy: float | None = None
    passed: bool = True
    heldout_images: int = 0
    int8_convs: int | None = None  # QLinearConv nodes in ONNX Runtime's optimised graph (int8 only)
    notes: list[str] = field(default_factory=list)
    rule: str = "exact"  # which of check.EXPORT_RULES judged it
    rule_text: str = ""
    images: int = 0  # random + held-out + labelled
    image_kind: str = "random"  # "random", or "real and random" where held-out or labelled images were run
    real_images: int = 0  # held-out + labelled
    agreement_images: int = 0  # the images ``agreement`` is over (see agreement_on)
    agreement_on: str = ""
    max_relative_diff: float | None = None  # max over images of |logit diff| / the image's logit spread
    relative_bound: float | None = None  # int8: the bound on max_relative_diff
    mean_relative_diff: float | None = None  # the mean of |logit diff| / the image's logit spread
    mean_relative_bound: float | None = None  # int8: the bound on mean_relative_diff
    min_margin: float | None = None  # the reference's smallest top-1/top-2 margin over the images


def random_images(n: int, seed: int = _SEED) -> np.ndarray:
    """``n`` smooth random uint8 (32, 32, 3) images (:data:`RANDOM_GRID`), the same for the same seed."""
    f = 32 // RANDOM_GRID
    grid = np.random.default_rng(seed).integers(0, 256, (n, RANDOM_GRID, RANDOM_GRID, 3)).astype(np.float64)
    x = grid.repeat(f, 1).repeat(f, 2)
    for axis in (1, 2):  # a box blur of width f along each axis (edges repeated)
        pad = [(0, 0)] * 4
        pad[axis] = (f // 2, f - f // 2)
        c = np.cumsum(np.pad(x, pad, mode="edge"), axis)
        x = (np.take(c, range(f, c.shape[axis]), axis) - np.take(c, range(c.shape[axis] - f), axis)) / f
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def validate(
    path: Path,
    model: Model,
    weights: str,
    batch: str | int,
    normalize_inside: bool,
    labelled: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
    device: str = "cpu",
    timings: dict[str, float] | None = None,
    heldout: np.ndarray | None = None,
    runtime: Runtime | None = None,
) -> Validation:
    """onnx.checker (full_check), then the runtime vs the PyTorch reference by :func:`judge_export`.

    The images are a fixed random batch, then ``heldout`` (unlabelled: training images no calibration saw),
    then ``labelled`` (accuracy is reported on those); the last two are the real ones. Both runtimes run through
    :func:`binexport.runtimes.stream_logits`, as in ``verify``.

    Args:
        runtime: what runs the file (default: an ONNX Runtime session on ``device``); tests pass other
            kernels (session options, OpenVINO) to show the verdict does not depend on them.

    Raises:
        CheckError: the graph fails onnx.checker, can't run, or misses its rule; InputError: an opset this
            ONNX Runtime can't load.
    """
    import onnx

    from binexport.runtimes import resolve_device, stream_logits
    from binexport.runtimes.ort import open_session, ort_errors
    from binexport.runtimes.ort_kernels import optimized_ops
    from binexport.runtimes.torch_ref import TorchRuntime

    timings = timings if timings is not None else {}
    t = time.perf_counter()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise CheckError(
            "the exported graph fails onnx.checker (full_check)", [str(e).strip().splitlines()[0]]
        ) from None
    timings["checker"] = time.perf_counter() - t

    t = time.perf_counter()
    raw = random_images(RANDOM_IMAGES)
    names = [f"random image {i}" for i in range(RANDOM_IMAGES)]
    n_held = 0 if heldout is None else len(heldout)
    if heldout is not None:
        raw = np.concatenate([raw, heldout])
        names += [f"held-out training image {i}" for i in range(n_held)]
    if labelled is not None:
        raw = np.concatenate([raw, labelled[0]])
        names += list(labelled[2])
    try:
        runtime = runtime or open_session(str(path), resolve_device(device))
        (got, _), (ref, _) = stream_logits([runtime, TorchRuntime(model)], raw, len(raw), 64)
    except ort_errors() as e:  # ONNX Runtime's own types, for graphs it can't load or run
        text = str(e).strip()
        if "opset" in text.lower() or "IR version" in text:
            import onnxruntime

            why = text.splitlines()[-1].rsplit(") ", 1)[-1].strip().split(". ")[-1]  # its last sentence
            raise InputError(
                f"ONNX Runtime {onnxruntime.__version__} here can't load this opset ({why}); "
                "choose a lower --opset (default 18)"
            ) from None
        raise CheckError("ONNX Runtime could not run the exported graph", [f"{type(e).__name__}: {text}"]) from None
    timings["runtime"] = time.perf_counter() - t
    real = np.arange(len(raw)) >= RANDOM_IMAGES
    try:
        rule, c = judge_export(got, ref, weights, real, names=names)
    except InputError as e:
        raise CheckError("the exported graph gives logits of the wrong shape", [str(e)]) from None
    n_real = int(real.sum())
    relative = c.tolerance.max_abs_logit_diff is None  # int8: bounded relative to each image's spread
    v = Validation(
        provider=runtime.provider,
        random_images=RANDOM_IMAGES,
        labelled_images=len(names) - RANDOM_IMAGES - n_held,
        heldout_images=n_held,
        max_abs_diff=c.max_abs_logit_diff if c.max_abs_logit_diff is not None else float("inf"),
        tolerance=c.tolerance.max_abs_logit_diff if c.tolerance.max_abs_logit_diff is not None else float("inf"),
        worst_output=c.worst_output,
        agreement=c.agreement,
        min_agreement=c.tolerance.min_agreement,
        passed=c.passed,
        rule=rule,
        rule_text=check.EXPORT_RULES[rule],
        images=len(raw),
        image_kind="real and random" if n_real else "random",
        real_images=n_real,
        agreement_images=c.agreement_images or 0,
        agreement_on="real images" if rule == "real-agreement" else "images past the margin",
        max_relative_diff=c.max_relative_logit_diff,
        relative_bound=check.INT8_RELATIVE_BOUND if relative else None,
        mean_relative_diff=c.mean_relative_logit_diff,
        mean_relative_bound=check.INT8_MEAN_RELATIVE_BOUND if relative else None,
        min_margin=float(check.margins(ref).min()) if len(ref) else None,
    )
    if labelled is not None:
        n = len(labelled[1])
        v.accuracy = float(np.mean(got[-n:].argmax(1) == labelled[1]))
        v.reference_accuracy = float(np.mean(ref[-n:].argmax(1) == labelled[1]))
    if not c.passed:
        raise CheckError(
            f"{runtime.provider} disagrees with the PyTorch reference ({v.images} images, {v.image_kind}; "
            f"rule: {rule}); no file written",
            c.problems,
        )
    if weights == "int8" and runtime.name == "onnxruntime":
        v.int8_convs = optimized_ops(str(path)).count("QLinearConv")
        blocks = 2 * 3 * model.arch.blocks_per_group
        if v.int8_convs < blocks:
            v.notes.append(
                f"ONNX Runtime ({runtime.provider}) fused only {v.int8_convs} of the {blocks} block convs "
                "into QLinearConv: this graph will not run faster than float here"
            )
    return v


def export_rule(weights: str, real_images: int) -> str:
    """Which rule of :data:`binexport.check.EXPORT_RULES` judges an export of ``weights`` with ``real_images`` real images."""
    tol = check.tolerance(weights)
    if tol.max_abs_logit_diff is not None and tol.max_abs_logit_diff <= 1e-4:
        return "exact"
    return "real-agreement" if real_images >= check.MIN_AGREEMENT_IMAGES else "margin"


def judge_export(
    logits: np.ndarray, reference: np.ndarray, weights: str, real: np.ndarray, *, names: list[str] | None = None
) -> tuple[str, check.Comparison]:
    """An export's validation: :func:`~binexport.check.compare` under the rule that fits its images (:func:`export_rule`).

    Every image's max |logit diff| must lie within the encoding's bound (int8: :data:`~binexport.check.INT8_RELATIVE_BOUND`
    times the image's logit spread, and the mean within :data:`~binexport.check.INT8_MEAN_RELATIVE_BOUND`). Top-1 agreement is
    measured on the real images where there are :data:`~binexport.check.MIN_AGREEMENT_IMAGES` or more (floor
    :data:`~binexport.check.EXPORT_MIN_AGREEMENT`), else only where the reference's margin exceeds twice the bound: no near-tie,
    flipped one way by one CPU's int8 kernel and the other way by another's, decides a verdict.

    Args:
        logits, reference: (N, classes) the export's and the reference's logits, same images in the same order.
        weights: the export's weight encoding.
        real: (N,) bool, which images are real (held-out training or labelled) rather than random.
        names: as :func:`~binexport.check.compare`.

    Returns:
        The rule's name (a key of :data:`binexport.check.EXPORT_RULES`) and the :class:`~binexport.check.Comparison`.

    Raises:
        InputError: as :func:`~binexport.check.compare`.

    Example:
        >>> judge_export(onnx_logits, torch_logits, "int8", np.zeros(4, bool))[0]  # doctest: +SKIP
        'margin'
    """
    real = np.asarray(real, bool)
    rule = export_rule(weights, int(real.sum()))
    bound = check.tolerance(weights).max_abs_logit_diff
    relative = bound is None  # int8: bounded relative to each image's spread
    c = check.compare(
        logits,
        reference,
        weights,
        names=names,
        what="ONNX",
        min_agreement=check.EXPORT_MIN_AGREEMENT.get(weights),
        bounds=check.INT8_RELATIVE_BOUND * check.spreads(reference) if relative else np.full(len(reference), bound),
        agree_on=real if rule == "real-agreement" else None,
        count_near_ties=rule == "real-agreement",
        mean_relative_bound=check.INT8_MEAN_RELATIVE_BOUND if relative else None,
    )
    return rule, c
