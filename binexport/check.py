"""The one comparison of an artifact's logits with the reference's, and the tolerances it is held to.

Both ``to-onnx`` (validating an export before it is written, :func:`~binexport.validation.judge_export`)
and ``verify`` (checking artifacts on a test set) call :func:`compare`; neither has rules of its own. Tolerances are keyed by *weight
encoding*, not file format:

- ``float32`` and ``1-bit`` artifacts (packed checkpoints, ``.bwn``, a training checkpoint binarised as trained,
  float32 and 1-bit ONNX) compute the same arithmetic as the reference up to summation order: float32 rounding
  over WRN-20-10's ~5,800-term dot products and 19 layers stays orders of magnitude below 1e-4 on logits of size
  ~10, so 1e-4 catches any real error (a flipped sign bit moves a logit by ~1e-2 or more), and every prediction
  must agree.
- ``int2`` ONNX stores the 1-bit weights as INT2 codes -1/+1 times a float32 scale and computes in float32: the
  same arithmetic as ``1-bit``, so the same tolerance.
- ``float16`` stores weights and computes in half precision (11-bit mantissa), so its logits move by ~1e-2: a
  bound on the logit error plus an argmax agreement floor.
- ``bfloat16`` (``.bwn --weights bfloat16``) rounds conv weights to an 8-bit mantissa (8x float16's weight error)
  and computes in float32. Measured on 500 real CIFAR-100 test images, He-init WRN-20-10 logits moved by up to
  0.33 and smaller widths by up to 0.45, past float16's 0.25 (docs/BENCHMARKS.md): its bound is 1.0, with the
  same 99 % agreement floor.
- ``int8`` quantizes activations (static, calibrated), so logits move by ~1e-1 and a few borderline images change
  class: it is held to accuracy, not logits: top-1 within 1 point of the reference's and >= 97 % agreement on a
  test set. An export's own validation is held to 95 % agreement on its real held-out images where it has at
  least :data:`MIN_AGREEMENT_IMAGES`; with fewer, or only random images, an agreement percentage is decided by
  near-ties (which flip with the CPU's int8 kernel), so the logit error is bounded relative to each image's
  logit spread and top-1 counted only past the margin instead (:func:`~binexport.validation.judge_export`).
- ``bf16-compute`` is not a weight encoding but a compute mode: OpenVINO's bfloat16 execution (``--precision
  bf16``) rounds activations and weights to an 8-bit mantissa in every layer, whatever the file stores. Measured
  on the 500 real CIFAR-100 test images (published WRN-20-10, OpenVINO 2026.4.1 on an AMD EPYC with avx512_bf16,
  2026-12-06): float32 and 1-bit ONNX logits moved by up to 0.19 (mean 0.011), 99.8 % agreement, top-1 0.2
  points lower; 0.09 was measured elsewhere on an AMX Xeon. Its bound is 0.5 (2.6x the worst seen), with int8's
  accuracy floors. A row that ran it is held to this key instead of its weights', except where the weights' own
  tolerance bounds accuracy, not logits (int8: its floors are the same, and int8 already moves logits by ~0.4).

Logits that are not all finite always fail, whatever the tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from binexport.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    """How close an artifact must stay to the reference.

    ``max_abs_logit_diff`` None means the logit difference is reported, not bounded;
    ``max_top1_drop`` (a fraction) bounds how much lower the artifact's top-1 accuracy may be.
    """

    max_abs_logit_diff: float | None
    min_agreement: float
    max_top1_drop: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """The bounds that apply (``max_top1_drop`` only where the encoding has one)."""
        return {k: v for k, v in asdict(self).items() if v is not None or k != "max_top1_drop"}


#: Compute modes with a tolerance of their own (keys of :data:`TOLERANCES` that are not weight encodings).
COMPUTE_MODES: dict[str, str] = {"bf16": "bf16-compute"}
#: Bound on the logit error of bfloat16 execution: 2.6x the 0.19 measured on real data (see above).
BF16_COMPUTE_MAX_DIFF = 0.5
#: Tolerance per weight encoding.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(1e-4, 1.0),
    "1-bit": Tolerance(1e-4, 1.0),
    "float16": Tolerance(0.25, 0.99),
    "bfloat16": Tolerance(1.0, 0.99),
    "int8": Tolerance(None, 0.97, max_top1_drop=0.01),
    "int2": Tolerance(1e-4, 1.0),
    "bf16-compute": Tolerance(BF16_COMPUTE_MAX_DIFF, 0.97, max_top1_drop=0.01),
}
#: Agreement floors of an export's own validation where they differ from :data:`TOLERANCES`.
EXPORT_MIN_AGREEMENT: dict[str, float] = {"int8": 0.95}
#: Fewest real images on which a top-1 agreement percentage decides an export
#: (:func:`~binexport.validation.judge_export`): over fewer, one near-tie flipped by the CPU's int8 kernel moves it by several points.
MIN_AGREEMENT_IMAGES = 50
#: int8 exports: the bound on each image's max |logit diff|, as a multiple of the spread (std over classes) of
#: that image's reference logits. Worst seen with ONNX Runtime (graph optimisations on and off, weight zero
#: point 0 and 1) and OpenVINO, AMD EPYC (AVX-512 VNNI), 2026-12-07, on the published WRN-20-10 (CIFAR-100)
#: and McDonnell's CIFAR-10 model: 0.11 and 0.017 on real held-out training images, 0.23 and 0.025 on the smooth
#: random images of ``to-onnx`` (uniform noise: 0.78, see ``validation.RANDOM_GRID``). A wrong weight scale
#: (x1.25 on one block conv) reached 2.3 on WRN-20-10's real images.
INT8_RELATIVE_BOUND = 0.6
#: int8 exports: the bound on the mean |logit diff| / spread over all images and classes, which a wrong channel
#: moves more surely than the max: worst seen 0.024 (WRN-20-10, smooth random images; 0.005 McDonnell's model);
#: one sign-flipped output channel of a block conv: 0.07 (WRN-20-10, 1 of 320), 0.04-0.11 (a WRN-8-1, 1 of 16-32).
INT8_MEAN_RELATIVE_BOUND = 0.06
#: The rules an export is judged by (:func:`~binexport.validation.judge_export`), as reports name them.
EXPORT_RULES: dict[str, str] = {
    "exact": "every logit within the encoding's bound, every top-1 kept where no rounding can flip it",
    "real-agreement": f"top-1 agreement on >= {MIN_AGREEMENT_IMAGES} real held-out images, and every image's "
    "logit error within its bound",
    "margin": "every image's logit error within its bound, top-1 counted only where the reference's margin "
    "exceeds twice the bound (too few real images for an agreement percentage)",
}
#: The weight encodings binexport knows, in the order reports list them.
WEIGHT_ENCODINGS: tuple[str, ...] = tuple(k for k in TOLERANCES if k not in COMPUTE_MODES.values())


def tolerance_key(weights: str, precision: str = "f32") -> str:
    """The :data:`TOLERANCES` key a row is held to: its weights', unless it ran a lossy compute mode.

    Weights whose tolerance bounds accuracy rather than logits (int8) keep it: it is already the looser one.
    """
    mode = COMPUTE_MODES.get(precision)
    own = TOLERANCES.get(weights)
    if mode is None or (own is not None and own.max_abs_logit_diff is None):
        return weights
    return mode


def tolerance(weights: str) -> Tolerance:
    """The tolerance of a weight encoding.

    Raises:
        InputError: for an encoding with no tolerance; the message lists the known ones.
    """
    tol = TOLERANCES.get(weights)
    if tol is None:
        raise InputError(f"no tolerance is defined for {weights!r} weights; known: {', '.join(WEIGHT_ENCODINGS)}")
    return tol


@dataclass
class Comparison:
    """Everything one comparison found; ``problems`` is empty when the artifact passes.

    ``agreement`` is over ``agreement_images`` images: all of them, or (with per-image bounds) those whose
    reference top-1/top-2 margin exceeds twice their bound, where no logit error within the bound can flip top-1.
    """

    weights: str
    images: int
    agreement: float
    disagreements: list[int]
    max_abs_logit_diff: float | None  # None where the artifact's logits are not all finite
    mean_abs_logit_diff: float | None
    worst_output: str
    tolerance: Tolerance
    top1_correct: int | None = None
    top5_correct: int | None = None
    reference_top1_correct: int | None = None
    agreement_images: int | None = None
    max_relative_logit_diff: float | None = None  # max over images of |logit diff| / that image's logit spread
    mean_relative_logit_diff: float | None = None  # the mean of |logit diff| / the image's spread
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(1).sum())


def compare(
    logits: np.ndarray,
    reference: np.ndarray,
    weights: str,
    *,
    labels: np.ndarray | None = None,
    names: list[str] | None = None,
    what: str = "artifact",
    min_agreement: float | None = None,
    bounds: np.ndarray | None = None,
    agree_on: np.ndarray | None = None,
    count_near_ties: bool = False,
    mean_relative_bound: float | None = None,
) -> Comparison:
    """Compare an artifact's logits with the reference's, collecting every problem against its tolerance.

    Args:
        logits: (N, classes) logits of the artifact.
        reference: (N, classes) logits of the reference, same images in the same order.
        weights: the artifact's weight encoding (a key of :data:`TOLERANCES`).
        labels: (N,) true labels, to count top-1 / top-5 correct (optional).
        names: one name per image, for the worst-output message (default ``image #i``).
        what: how to call the artifact in messages (e.g. ``ONNX``).
        min_agreement: replace the tolerance's agreement floor (an export's validation, see
            :data:`EXPORT_MIN_AGREEMENT`).
        bounds: (N,) a bound on each image's |logit diff|, replacing the tolerance's ``max_abs_logit_diff``
            (:func:`~binexport.validation.judge_export`); a top-1 change then counts only where the reference's
            margin exceeds twice the image's bound (a margin-aware agreement: near-ties decide nothing).
        agree_on: (N,) bool, the images agreement is measured on (default all).
        count_near_ties: with ``bounds``, count every top-1 change on ``agree_on`` (a plain agreement, for
            enough real images), not only those past the margin.
        mean_relative_bound: a bound on the mean of |logit diff| / the image's logit spread (int8 exports).

    Returns:
        A :class:`Comparison`; ``passed`` is False when any problem was found.

    Raises:
        InputError: the shapes differ (the artifact is not a model of this reference) or the encoding is unknown.

    Example:
        >>> c = compare(onnx_logits, torch_logits, "1-bit")     # doctest: +SKIP
        >>> c.passed, c.max_abs_logit_diff                      # doctest: +SKIP
        (True, 3.8e-06)
    """
    tol = tolerance(weights)
    if min_agreement is not None:
        tol = Tolerance(tol.max_abs_logit_diff, min_agreement, tol.max_top1_drop)
    if logits.shape != reference.shape:
        raise InputError(
            f"{what} gives logits of shape {logits.shape}, the reference {reference.shape}; "
            "is it a model of this reference?"
        )
    n = len(reference)
    names = names or [f"image #{i}" for i in range(n)]
    top1, ref_top1 = logits.argmax(1), reference.argmax(1)
    counted = np.ones(n, bool) if agree_on is None else np.asarray(agree_on, bool).copy()
    if bounds is not None and not count_near_ties:
        counted &= margins(reference) > 2 * bounds
    differ = [int(i) for i in np.flatnonzero((top1 != ref_top1) & counted)]
    n_agree = int(counted.sum())
    agreement = 1.0 - len(differ) / n_agree if n_agree else 1.0
    problems: list[str] = []
    finite = bool(np.isfinite(logits).all())
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    max_d = mean_d = None
    worst = ""
    if not finite:
        problems.append("logits are not all finite (NaN or inf)")
    elif diff.size:
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        max_d, mean_d = float(diff[i, j]), float(diff.mean())
        worst = f"{names[i]}, logit {j}: {what} {logits[i, j]:.6g} vs reference {reference[i, j]:.6g}"
    else:
        max_d = mean_d = 0.0
    c = Comparison(weights, n, agreement, differ, max_d, mean_d, worst, tol, agreement_images=n_agree)
    if diff.size and finite:
        rel = diff / np.maximum(spreads(reference), _TINY)[:, None]
        c.max_relative_logit_diff, c.mean_relative_logit_diff = float(rel.max()), float(rel.mean())
        if mean_relative_bound is not None and c.mean_relative_logit_diff > mean_relative_bound:
            problems.append(
                f"mean |logit diff| is {c.mean_relative_logit_diff:.3g} x the logits' spread, more than the "
                f"{mean_relative_bound:g} allowed for {weights} weights"
            )
    if labels is not None:
        c.top1_correct = int((top1 == labels).sum())
        c.top5_correct = top_k_correct(logits, labels, 5)
        c.reference_top1_correct = int((ref_top1 == labels).sum())
    if agreement < tol.min_agreement:
        first = ", ".join(f"#{i}" for i in differ[:5])
        problems.append(
            f"top-1 agreement {100 * agreement:.2f} % < {100 * tol.min_agreement:g} % ({len(differ)} of "
            f"{n_agree} images differ, first {first})"
        )
    if bounds is not None and finite and diff.size:
        over = np.flatnonzero(diff.max(1) > bounds)
        if len(over):
            w = int(over[np.argmax(diff.max(1)[over] / np.maximum(bounds[over], _TINY))])
            k = int(np.argmax(diff[w]))
            problems.append(
                f"|logit diff| beyond its bound on {len(over)} of {n} images (worst output {names[w]}, logit {k}: "
                f"{what} {logits[w, k]:.6g} vs reference {reference[w, k]:.6g}, {diff[w, k]:.3g} > {bounds[w]:.3g}"
                + (f", {INT8_RELATIVE_BOUND:g} x its logit spread)" if tol.max_abs_logit_diff is None else ")")
            )
    elif max_d is not None and tol.max_abs_logit_diff is not None and max_d > tol.max_abs_logit_diff:
        problems.append(
            f"max |logit diff| {max_d:.3g} > {tol.max_abs_logit_diff:g} allowed for {weights} weights "
            f"(worst output {worst})"
        )
    if tol.max_top1_drop is not None and labels is not None and n:
        drop = (c.reference_top1_correct - c.top1_correct) / n  # type: ignore[operator]
        if drop > tol.max_top1_drop:
            problems.append(
                f"top-1 accuracy {100 * c.top1_correct / n:.2f} % is {100 * drop:.2f} points below the "  # type: ignore[operator]
                f"reference's, more than the {100 * tol.max_top1_drop:g} allowed for {weights} weights"
            )
    c.problems = problems
    return c


_TINY = 1e-12


def margins(logits: np.ndarray) -> np.ndarray:
    """(N,) each row's top-1 minus top-2 logit: how far a prediction is from a tie."""
    if logits.shape[1] < 2:
        return np.full(len(logits), np.inf)
    top2 = np.partition(logits.astype(np.float64), -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def spreads(logits: np.ndarray) -> np.ndarray:
    """(N,) the standard deviation of each row's logits over the classes: the scale a logit error is judged on."""
    out: np.ndarray = logits.astype(np.float64).std(1)
    return out
