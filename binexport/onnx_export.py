"""``to-onnx``: build the graph, prove it on ONNX Runtime against the PyTorch reference, then write it.

Validation is part of every export, not a warning: the temp file is checked
by ``onnx.checker`` (full_check) and run by ONNX Runtime on a fixed random
batch (plus labelled images when given); only a file that matches the
reference within ``tolerances`` replaces the output, otherwise no file is left.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binexport import tolerances
from binexport._fileio import check_output, write_atomic
from binexport.errors import CheckError, InputError
from binexport.model import Model

#: images in the fixed random validation batch: every weight reaches every logit, so a few images catch any
#: encoding error; few, because the PyTorch reference of WRN-20-10 costs ~0.2 s per image on two cores
RANDOM_IMAGES = 4
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


@dataclass
class OnnxReport:
    """What ``export_onnx`` did; the CLI renders it, ``--json`` prints ``to_dict()``."""

    input: str
    input_format: str
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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def export_onnx(src: str | Path | Model, out: str | Path | None = None, *, weights: str | None = None,
                opset: int = 18, batch: str | int = "dynamic", normalize_inside: bool = False, force: bool = False,
                images: str | Path | None = None, device: str = "cpu", binarized: bool | None = None) -> OnnxReport:
    """Export ``src`` (any file binexport reads, or a Model) to a validated ONNX file.

    Raises InputError for bad options or inputs (e.g. ``packed`` on a full-precision model) and
    CheckError, with the worst output named, when ONNX Runtime disagrees with the reference.
    """
    from binexport import api
    from binexport.formats import onnx as fmt

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(src, Model):
        model = src
        if out is None:
            raise InputError("exporting an in-memory model needs an output path")
    dest = check_output(out if out is not None else api.default_output(src, fmt.NAME), force)
    if not isinstance(src, Model):
        model = api.load(src, binarized=binarized)
    weights, opset, batch = fmt.check_options(model, weights, opset, batch)
    labelled = _labelled(images) if images is not None else None
    timings["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    data = fmt.write(model, weights=weights, opset=opset, batch=batch, normalize_inside=normalize_inside)
    timings["build"] = time.perf_counter() - t
    result: list[Validation] = []

    def _check(tmp: Path) -> None:
        result.append(validate(tmp, model, weights, batch, normalize_inside, labelled, device, timings))

    t = time.perf_counter()
    write_atomic(dest, data, check=_check)
    timings["write"] = time.perf_counter() - t - timings.get("checker", 0.0) - timings.get("runtime", 0.0)
    in_bytes = model.source.size
    return OnnxReport(
        input=str(model.source.path if isinstance(src, Model) else src), input_format=model.source.format,
        input_bytes=in_bytes, output=str(dest), output_bytes=len(data), architecture=model.arch.name,
        num_classes=model.arch.num_classes, binarized=model.binarized, weights=weights, opset=opset, batch=batch,
        input_kind=fmt.input_kind(weights, normalize_inside), validation=result[0],
        seconds=time.perf_counter() - t0, timings=timings)


def _labelled(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from binexport.images import load_labelled_folder

    return load_labelled_folder(folder)


def validate(path: Path, model: Model, weights: str, batch: str | int, normalize_inside: bool,
             labelled: tuple[np.ndarray, np.ndarray, list[str]] | None = None, device: str = "cpu",
             timings: dict[str, float] | None = None) -> Validation:
    """onnx.checker (full_check), then ONNX Runtime vs the PyTorch reference; CheckError on any failure."""
    import onnx

    from binexport.images import normalize
    from binexport.ort_runtime import open_session, ort_errors, resolve_device
    from binexport.torch_runtime import reference_logits

    timings = timings if timings is not None else {}
    t = time.perf_counter()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise CheckError("the exported graph fails onnx.checker (full_check)", [str(e).strip().splitlines()[0]]) \
            from None
    timings["checker"] = time.perf_counter() - t

    t = time.perf_counter()
    rng = np.random.default_rng(_SEED)
    raw = rng.integers(0, 256, (RANDOM_IMAGES, 32, 32, 3), dtype=np.uint8)
    names = [f"random image {i}" for i in range(RANDOM_IMAGES)]
    if labelled is not None:
        raw = np.concatenate([raw, labelled[0]])
        names += list(labelled[2])
    x = normalize(raw)
    feed = raw if normalize_inside else x
    try:
        session = open_session(str(path), resolve_device(device))
        got = _run(session, feed, batch)
    except ort_errors() as e:  # ONNX Runtime's own types, for graphs it can't load or run
        text = str(e).strip()
        if "opset" in text.lower() or "IR version" in text:
            import onnxruntime

            why = text.splitlines()[-1].rsplit(") ", 1)[-1].strip().split(". ")[-1]  # its last sentence
            raise InputError(f"ONNX Runtime {onnxruntime.__version__} here can't load this opset ({why}); "
                             "choose a lower --opset (default 18)") from None
        raise CheckError("ONNX Runtime could not run the exported graph", [f"{type(e).__name__}: {text}"]) from None
    ref = reference_logits(model, x)
    timings["runtime"] = time.perf_counter() - t
    return _compare(got, ref, names, weights, session.provider, labelled)


def _run(session: Any, x: np.ndarray, batch: str | int) -> np.ndarray:
    """Logits in the graph's batch size; a fixed batch gets its last chunk zero-padded, then cut."""
    if batch == "dynamic":
        return session.run(x, 64)
    b = int(batch)
    outs = []
    for i in range(0, len(x), b):
        chunk = x[i:i + b]
        pad = b - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        outs.append(session.run(chunk, b)[: b - pad])
    return np.concatenate(outs)


def _compare(got: np.ndarray, ref: np.ndarray, names: list[str], weights: str, provider: str,
             labelled: tuple[np.ndarray, np.ndarray, list[str]] | None) -> Validation:
    tol = tolerances.MAX_ABS_LOGIT_DIFF[weights]
    floor = tolerances.MIN_AGREEMENT[weights]
    if got.shape != ref.shape:
        raise CheckError("the exported graph gives logits of the wrong shape",
                         [f"expected {ref.shape}, ONNX Runtime gave {got.shape}"])
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    diff = np.where(np.isfinite(diff), diff, np.inf)
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = f"{names[i]}, logit {j}: ONNX {got[i, j]:.6g} vs reference {ref[i, j]:.6g}"
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    v = Validation(provider=provider, random_images=RANDOM_IMAGES, labelled_images=len(names) - RANDOM_IMAGES,
                   max_abs_diff=float(diff[i, j]), tolerance=tol, worst_output=worst, agreement=agree,
                   min_agreement=floor)
    if labelled is not None:
        labels = labelled[1]
        n = len(labels)
        v.accuracy = float(np.mean(got[-n:].argmax(1) == labels))
        v.reference_accuracy = float(np.mean(ref[-n:].argmax(1) == labels))
    problems = []
    if not diff[i, j] <= tol:
        problems.append(f"worst output {worst} (|diff| {diff[i, j]:.3g} > {tol:g})")
    if agree < floor:
        problems.append(f"top-1 agrees with the reference on {agree:.1%} of {len(names)} images, "
                        f"needs {floor:.0%}")
    if problems:
        v.passed = False
        raise CheckError(f"ONNX Runtime ({provider}) disagrees with the PyTorch reference; no file written",
                         problems)
    return v
