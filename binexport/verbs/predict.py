"""``binexport predict``: run any exported file on a user's own pictures and name the classes it sees.

No labelled dataset is needed: each PNG, of any size up to :data:`MAX_PIXELS`, is decoded by binexport's
bounded reader, resized to 32x32 (:mod:`binexport.data.resize` states the method), normalised as the model's
family expects (the artifact's own input kind, as ``verify`` feeds it) and run on the file's runtime; the
top-k classes come with their softmax probabilities and names (CIFAR-10/100 by class count, or ``labels``).
A 32x32 image reaches the model exactly as ``verify`` would feed it, so both name the same top-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from binexport.errors import InputError
from binexport.report import Report

#: Default of ``--top-k``.
DEFAULT_TOP_K = 5
#: Images run per forward call.
BATCH_SIZE = 64
#: At most this many images per call: every decoded image (3 KB at 32x32) is held until its batch runs.
MAX_IMAGES = 10_000
#: The largest image decoded (2**20 pixels, e.g. 1024x1024): decoding is pure Python per row; beyond this an image
#: is refused from its header, before any decompression (peak memory: the <=16 MiB file, ~4x the decoded pixels).
MAX_PIXELS = 1 << 20


@dataclass
class ClassScore:
    """One of an image's top classes."""

    index: int
    label: str
    probability: float
    logit: float


@dataclass
class ImagePrediction:
    """What the model sees in one picture."""

    path: str
    width: int
    height: int
    top: list[ClassScore]


@dataclass
class PredictReport(Report):
    """Every image's top classes, what ran them, and how the pictures were prepared."""

    model: str
    format: str
    weights: str
    runtime: str
    provider: str
    input: str
    num_classes: int
    labels: str  # where the class names came from
    resize: str
    top_k: int
    images: list[ImagePrediction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: str = ""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_images(paths: Sequence[str | Path], max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, 32, 32, 3) uint8 pixels of ``paths`` (each PNG decoded, then resized), and each original (width, height).

    Raises:
        InputError: a file that is missing, not a PNG (JPEG and others: convert to PNG first), corrupt, or larger
            than ``max_pixels``.
    """
    from binexport.data.png import read_png
    from binexport.data.resize import resize_to_model

    out, sizes = [], []
    for p in paths:
        img = read_png(p, max_pixels=max_pixels)
        sizes.append((img.shape[1], img.shape[0]))
        out.append(resize_to_model(img))
        del img
    return np.stack(out), sizes


def predict(
    model: str | Path,
    images: Sequence[str | Path],
    *,
    top_k: int = DEFAULT_TOP_K,
    labels: str | Path | None = None,
    runtime: str = "onnxruntime",
    device: str = "cpu",
    binarized: bool | None = None,
) -> PredictReport:
    """The ``top_k`` classes ``model`` sees in each image, with names and softmax probabilities.

    Args:
        model: any file binexport runs (checkpoint, packed, ``.bwn``, ``.mat``, ONNX, ``.ort``...), or a run folder.
        images: PNG files of any size up to :data:`MAX_PIXELS` pixels.
        top_k: classes listed per image (at most the model's number of classes).
        labels: ``CIFAR10``, ``CIFAR100``, ``SVHN`` or a text file of class names, one a line (default: CIFAR-10
            names for a 10-class model, CIFAR-100 names for a 100-class one).
        runtime: ``onnxruntime`` (alias ``ort``) or ``openvino``, for ONNX files (model files run on the PyTorch reference).
        device: ``auto``, ``cuda`` or ``cpu``.
        binarized: override ``log.txt`` about ``--binarize`` for training checkpoints.

    Returns:
        A :class:`PredictReport`, one :class:`ImagePrediction` per image in the order given.

    Raises:
        InputError: no images, too many, a bad image, a bad ``labels``, or a model file binexport can't run.

    Example:
        >>> r = binexport.predict("model.onnx", ["cat.png"])   # doctest: +SKIP
        >>> r.images[0].top[0].label                            # doctest: +SKIP
        'cat'
    """
    from binexport import __version__, formats
    from binexport.data.labels import default_labels, load_labels
    from binexport.data.resize import METHOD
    from binexport.runtimes.artifact import open_artifact
    from binexport.runtimes.base import stream_logits
    from binexport.runtimes.ort import ort_errors
    from binexport.runtimes.plan import plan_runtimes, runtime_id

    if not images:
        raise InputError("predict needs at least one IMAGE (a PNG file)")
    if len(images) > MAX_IMAGES:
        raise InputError(f"{len(images):,} images given; predict takes at most {MAX_IMAGES:,} per call")
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    runtime = runtime_id(runtime)
    _, _, devs = plan_runtimes(runtime, "f32", device)
    pixels, sizes = load_images(images)
    art = open_artifact(formats.resolve(model), devs[runtime], binarized=binarized, runtime=runtime)
    rt = art.session

    def failed(i: int, shape: tuple[int, ...], e: Exception) -> Exception:
        return InputError(
            f"{art.path}: {rt.name} failed on {rt.input_kind} input of shape {shape} ({str(e).strip()[:200]}); "
            "expected a binexport WRN export"
        )

    [(logits, _)] = stream_logits([rt], pixels, len(pixels), BATCH_SIZE, None, ort_errors(), failed)
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise InputError(f"{art.path}: gives output of shape {logits.shape}; expected logits (N, classes)")
    n_cls = logits.shape[1]
    names, origin = load_labels(labels, n_cls) if labels is not None else default_labels(n_cls)
    notes = []
    if not np.isfinite(logits).all():
        notes.append("some logits are not finite: the probabilities of those images mean nothing")
    k = min(top_k, n_cls)
    if k < top_k:
        notes.append(f"--top-k {top_k} is more than the model's {n_cls} classes: listing {k}")
    probs = softmax(logits)
    preds = []
    for p, (w, h), lg, pr in zip(images, sizes, logits, probs, strict=True):
        order = np.argsort(-lg, kind="stable")[:k]  # by logit: top-1 is argmax, as verify takes it
        top = [ClassScore(int(c), names[c], float(pr[c]), float(lg[c])) for c in order]
        preds.append(ImagePrediction(str(p), w, h, top))
    return PredictReport(
        model=str(art.path),
        format=art.format,
        weights=art.weights,
        runtime=rt.name,
        provider=rt.provider,
        input=rt.input_kind,
        num_classes=n_cls,
        labels=origin,
        resize=METHOD,
        top_k=k,
        images=preds,
        notes=notes + list(art.notes),
        version=__version__,
    )
