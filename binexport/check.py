"""The one comparison of an artifact's logits with the reference's, and the tolerances it is held to.

Both ``to-onnx`` (validating an export before it is written) and ``verify``
(checking artifacts on a test set) call :func:`compare`; neither has rules of
its own. Tolerances are keyed by *weight encoding*, not file format:

- ``float32`` and ``1-bit`` artifacts (packed checkpoints, ``.bwn``, a training
  checkpoint binarised as trained, float32 and 1-bit ONNX) compute the same
  arithmetic as the reference up to summation order: float32 rounding over
  WRN-20-10's ~5,800-term dot products and 19 layers stays orders of magnitude
  below 1e-4 on logits of size ~10, so 1e-4 catches any real error (a flipped
  sign bit moves a logit by ~1e-2 or more), and every prediction must agree.
- ``int2`` ONNX stores the 1-bit weights as INT2 codes -1/+1 times a float32
  scale and computes in float32: the same arithmetic as ``1-bit``, so the same
  tolerance.
- ``float16`` stores weights and computes in half precision (11-bit mantissa),
  so its logits move by ~1e-2: a bound on the logit error plus an argmax
  agreement floor.
- ``bfloat16`` (``.bwn --weights bfloat16``) rounds conv weights to an 8-bit
  mantissa (8x float16's weight error) and computes in float32. Measured on
  500 real CIFAR-100 test images, He-init WRN-20-10 logits moved by up to 0.33
  and smaller widths by up to 0.45, past float16's 0.25 (docs/BENCHMARKS.md):
  its bound is 1.0, with the same 99 % agreement floor.
- ``int8`` quantizes activations (static, calibrated), so logits move by
  ~1e-1 and a few borderline images change class: it is held to accuracy, not
  logits: top-1 within 1 point of the reference's and >= 97 % agreement on a
  test set; an export is refused below 95 % agreement on its validation images
  (fewer images, so a looser floor).

- ``bf16-compute`` is not a weight encoding but a compute mode: OpenVINO's
  bfloat16 execution (``--precision bf16``) rounds activations and weights to
  an 8-bit mantissa in every layer, whatever the file stores. Measured on the
  500 real CIFAR-100 test images (published WRN-20-10, OpenVINO 2026.4.1 on an
  AMD EPYC with avx512_bf16, 2026-12-06): float32 and 1-bit ONNX logits moved
  by up to 0.19 (mean 0.011), 99.8 % agreement, top-1 0.2 points lower; 0.09 was
  measured elsewhere on an AMX Xeon. Its bound is 0.5 (2.6x the worst seen), with
  int8's accuracy floors. A row that ran it is held to this key instead of its
  weights', except where the weights' own tolerance bounds accuracy, not logits
  (int8: its floors are the same, and int8 already moves logits by ~0.4).

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
    """Everything one comparison found; ``problems`` is empty when the artifact passes."""

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
    differ = [int(i) for i in np.flatnonzero(top1 != ref_top1)]
    agreement = 1.0 - len(differ) / n if n else 1.0
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
    c = Comparison(weights, n, agreement, differ, max_d, mean_d, worst, tol)
    if labels is not None:
        c.top1_correct = int((top1 == labels).sum())
        c.top5_correct = top_k_correct(logits, labels, 5)
        c.reference_top1_correct = int((ref_top1 == labels).sum())
    if agreement < tol.min_agreement:
        first = ", ".join(f"#{i}" for i in differ[:5])
        problems.append(
            f"top-1 agreement {100 * agreement:.2f} % < {100 * tol.min_agreement:g} % ({len(differ)} of "
            f"{n} images differ, first {first})"
        )
    if max_d is not None and tol.max_abs_logit_diff is not None and max_d > tol.max_abs_logit_diff:
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
