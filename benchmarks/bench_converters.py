"""Which ONNX consumers besides ONNX Runtime load binexport's graphs, and how close their logits come.

Usage: ``python benchmarks/bench_converters.py [CHECKPOINT]`` (default: a random WRN-8-1). Each consumer is
tried on the float32 and the 1-bit graph; the reference is ``tests/support/spec_reference.spec_forward`` when the
model is random, else ONNX Runtime. Converters are optional: a missing one is reported, never installed.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from binexport.formats import onnx as fmt
from binexport.runtimes.ort import open_session


def _reference_evaluator(path: str, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(path).run(None, {"input": x})[0]


def stub_torchvision() -> None:
    """onnx2torch and onnx2pytorch import torchvision for NMS and RoIAlign only (no WRN uses them); where
    torchvision is absent or built for another torch (PyPI's CUDA wheel beside a CPU torch), stand in for it."""
    import types

    try:
        import torchvision.ops  # noqa: F401
    except Exception:  # noqa: BLE001 (a broken install raises RuntimeError, not ImportError)
        tv = types.ModuleType("torchvision")
        for sub in ("ops", "io"):
            mod = types.ModuleType(f"torchvision.{sub}")
            mod.__getattr__ = lambda name: None  # type: ignore[method-assign]
            setattr(tv, sub, mod)
            sys.modules[f"torchvision.{sub}"] = mod
        sys.modules["torchvision"] = tv


def _onnx2torch(path: str, x: np.ndarray) -> np.ndarray:
    stub_torchvision()
    import torch
    from onnx2torch import convert

    with torch.no_grad():
        return convert(path).eval()(torch.from_numpy(x)).numpy()


def _onnx2pytorch(path: str, x: np.ndarray) -> np.ndarray:
    stub_torchvision()
    import onnx
    import torch
    from onnx2pytorch import ConvertModel

    with torch.no_grad():
        return ConvertModel(onnx.load(path)).eval()(torch.from_numpy(x)).numpy()


def _openvino(path: str, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # not bf16 on AMX CPUs
    return np.asarray(compiled(x)[0])


def _tract(path: str, x: np.ndarray) -> np.ndarray:
    import tract

    model = tract.onnx().load(path)
    model.set_input_fact(0, f"{','.join(map(str, x.shape))},f32")  # the graph's batch is symbolic
    return model.into_model().into_runnable().run([x])[0].to_numpy()


CONSUMERS: dict[str, Callable[[str, np.ndarray], np.ndarray]] = {
    "onnx.reference.ReferenceEvaluator": _reference_evaluator,
    "onnx2torch": _onnx2torch,
    "onnx2pytorch": _onnx2pytorch,
    "openvino (CPU)": _openvino,
    "tract": _tract,
}


def main() -> None:
    from support.models import normalized_batch, tiny_model

    import binexport as api

    model = api.load(sys.argv[1]) if len(sys.argv) > 1 else tiny_model(8, 1, 10, seed=3)
    x = normalized_batch(4, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        for weights in ("float32", "1-bit"):
            path = str(Path(tmp) / f"{weights}.onnx")
            Path(path).write_bytes(fmt.write(model, weights=weights))
            ref = open_session(path).run(x)
            for name, run in CONSUMERS.items():
                try:
                    diff = f"max |logit - ORT| = {np.abs(run(path, x) - ref).max():.2g}"
                except ImportError as e:
                    diff = f"not installed ({e.name})"
                except Exception as e:  # noqa: BLE001 (any failure of a third-party converter is the measurement)
                    last = traceback.format_exception_only(type(e), e)[-1].strip()
                    diff = f"FAILS: {last[:160]}"
                print(f"{model.arch.name} {weights:8} {name:34} {diff}")


if __name__ == "__main__":
    main()
