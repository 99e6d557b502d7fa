"""What needs a CUDA GPU: ONNX Runtime's CUDA provider really runs the exports, exact where they should be, and
bench measures on it. Marked ``cuda``; each skips with the reason where PyTorch sees no GPU (scripts/gpu-check.sh
runs them with ``pytest -m cuda`` on a GPU machine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke

from binexport import bench, check, verify
from binexport.data.synth import write_cifar_testset


def _no_cuda_reason() -> str:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    return "" if torch.cuda.is_available() else "no CUDA device is visible to PyTorch on this machine"


pytestmark = [pytest.mark.cuda, pytest.mark.skipif(bool(_no_cuda_reason()), reason=_no_cuda_reason() or "cuda")]


@pytest.fixture(scope="module")
def files(artifacts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = dict(artifacts(depth=8, width=1, num_classes=100, seed=11, onnx=("1-bit", "float32", "float16")))
    rng = np.random.default_rng(1)
    data = tmp_path_factory.mktemp("cuda") / "data"
    write_cifar_testset(data, rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, 64))
    out["data"] = data
    return out


def test_verify_on_the_cuda_provider_is_within_tolerance(files: dict[str, Path]) -> None:
    arts = [files["packed"], files["1-bit"], files["float32"], files["float16"]]
    r = verify(arts, dataset="CIFAR100", data_root=files["data"], device="cuda")
    assert r.device == "cuda" and r.passed, r.failures
    for row in r.artifacts[1:]:
        assert row.provider == "CUDAExecutionProvider" and row.device == "cuda"
        assert row.max_abs_logit_diff is not None
        assert row.max_abs_logit_diff <= check.TOLERANCES[row.weights].max_abs_logit_diff  # TF32 off: 1e-4 holds


def test_bench_on_cuda_reports_the_cuda_provider(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    res = invoke(
        "bench",
        str(files["1-bit"]),
        str(files["packed"]),
        "--device",
        "cuda",
        "--seconds",
        "0.5",
        "--batch-size",
        "8",
        "--json-out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["provider"] == "CUDAExecutionProvider" and rows[1]["provider"] == "torch:cuda"


def test_openvino_rows_stay_on_the_cpu_under_device_auto(files: dict[str, Path]) -> None:
    pytest.importorskip("openvino", reason='OpenVINO is not installed (pip install "binexport[openvino]")')
    r = bench([files["1-bit"]], device="auto", runtime="all", seconds=0.3, batch_size=4)
    assert [(row.runtime, row.provider) for row in r.rows] == [
        ("onnxruntime", "CUDAExecutionProvider"),
        ("openvino", "OpenVINO:CPU"),
    ]
