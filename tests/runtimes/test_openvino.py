"""OpenVINO as a second runtime: exact at f32 (hint pinned and read back), bf16 declared lossy, the kernels it
reports, one row per runtime in verify and bench, and the one-line refusal where the extra is missing."""

from __future__ import annotations

import builtins
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.models import normalized_batch, tiny_model
from support.paths import CIFAR100_SAMPLES, REAL_PACKED
from support.refusals import assert_refused

from binexport import check, formats, verify
from binexport.data.synth import write_cifar_testset
from binexport.errors import InputError
from binexport.runtimes import RUNTIMES, open_artifact, resolve_runtimes
from binexport.runtimes.openvino import INSTALL_HINT, summarize_kernels

ov = pytest.importorskip("openvino", reason='OpenVINO is not installed (pip install "binexport[openvino]")')


@pytest.fixture(scope="module")
def files(artifacts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = artifacts(depth=8, width=0.5, num_classes=100, seed=3, onnx=("1-bit", "float32"))
    out = {"packed": made["packed"], "onnx": made["1-bit"], "float32": made["float32"]}
    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("ov") / "data"
    write_cifar_testset(data, rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, 40))
    out["data"] = data
    return out


def _bf16_runs_here() -> bool:
    core = ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("name", ["onnx", "float32"])
def test_openvino_is_exact_at_f32_against_the_reference(files: dict[str, Path], name: str) -> None:
    from binexport.runtimes.torch_ref import reference_logits

    ref = open_artifact(files["packed"])
    a = open_artifact(files[name], runtime="openvino")
    x = normalized_batch(16, seed=1)
    y = a.session.logits(x, batch_size=5)  # 5 does not divide 16: the last batch is short
    expected = reference_logits(ref.model, x)
    assert a.session.name == "openvino" and a.weights == ("1-bit" if name == "onnx" else "float32")
    assert y.shape == (16, 100) and np.abs(y - expected).max() <= check.TOLERANCES["float32"].max_abs_logit_diff
    assert (y.argmax(1) == expected.argmax(1)).all()


def test_precision_hint_is_pinned_to_f32_and_read_back(files: dict[str, Path]) -> None:
    a = open_artifact(files["onnx"], runtime="openvino", threads=1)
    rt = a.session
    assert rt.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert rt.compute == "f32" and rt.threads == 1
    assert rt.provider == "OpenVINO:CPU" and rt.execution_devices == ["CPU"]  # reported, not assumed
    if _bf16_runs_here():  # where the CPU has bf16, OpenVINO's own default is lossy: the pin is what makes f32
        default = ov.Core().compile_model(str(files["onnx"]), "CPU")
        assert default.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16


def test_bf16_is_a_lossy_mode_with_its_own_tolerance(files: dict[str, Path]) -> None:
    assert check.tolerance_key("1-bit", "bf16") == "bf16-compute" and check.tolerance_key("1-bit") == "1-bit"
    assert check.tolerance_key("int8", "bf16") == "int8"  # accuracy-bounded already: int8 keeps its own
    assert "bf16-compute" in check.TOLERANCES and "bf16-compute" not in check.WEIGHT_ENCODINGS
    tol = check.TOLERANCES["bf16-compute"]
    assert (
        tol.max_abs_logit_diff is not None and tol.max_abs_logit_diff > check.TOLERANCES["float32"].max_abs_logit_diff
    )
    if not _bf16_runs_here():
        with pytest.raises(InputError, match="compiled the model with f32"):
            open_artifact(files["onnx"], runtime="openvino", compute="bf16")
        return
    r = verify(
        [files["packed"], files["onnx"]],
        dataset="CIFAR100",
        data_root=files["data"],
        device="cpu",
        runtime="openvino",
        precision="bf16",
    )
    row = r.artifacts[1]
    assert (row.runtime, row.precision) == ("openvino", "bf16") and r.precision == "bf16"
    assert row.tolerance == tol.to_dict() and any("lossy" in n for n in row.notes)
    assert row.max_abs_logit_diff is not None and row.max_abs_logit_diff > 1e-4  # it really ran bf16
    res = invoke(
        "verify",
        str(files["packed"]),
        str(files["onnx"]),
        "--runtime",
        "openvino",
        "--precision",
        "bf16",
        "--dataset",
        "CIFAR100",
        "--data-root",
        str(files["data"]),
        "--device",
        "cpu",
    )
    assert "OpenVINO:CPU bf16" in res.stdout, res.output


def test_bf16_without_openvino_is_refused(files: dict[str, Path]) -> None:
    res = invoke("bench", str(files["onnx"]), "--precision", "bf16", "--seconds", "0.1")
    assert_refused(res, match="add --runtime openvino")


def test_kernel_summary_parsing() -> None:
    counts = Counter(
        {
            ("Convolution", "brgconv_avx512_amx_I8"): 19,
            ("Convolution", "jit_avx512_f32"): 1,
            ("Eltwise", "jit_avx512_I8"): 9,
            ("Const", "unknown_f32"): 40,
            ("Reorder", "jit_uni_f32"): 3,
            ("Pooling", "ref_f32"): 1,
        }
    )
    assert summarize_kernels(counts) == (
        "conv: brgconv_avx512_amx_I8 x19, jit_avx512_f32 x1; other: jit_avx512_I8 x9, ref_f32 x1"
    )
    assert summarize_kernels(Counter()) == ""


def test_openvino_reports_the_kernels_of_its_runtime_model(files: dict[str, Path]) -> None:
    k = open_artifact(files["onnx"], runtime="openvino").session.kernels()
    assert k.startswith("conv: ") and " x" in k
    assert "unknown" not in k and "Const" not in k
    assert open_artifact(files["packed"]).session.kernels() == ""  # the base class: nothing to say


def test_verify_runtime_all_gives_one_row_per_runtime_in_json(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    res = invoke(
        "verify",
        str(files["packed"]),
        str(files["onnx"]),
        str(files["float32"]),
        "--runtime",
        "all",
        "--dataset",
        "CIFAR100",
        "--data-root",
        str(files["data"]),
        "--device",
        "cpu",
        "--json-out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["runtimes"] == ["onnxruntime", "openvino"] and rep["precision"] == "f32"
    rows = [(Path(r["path"]).name, r["runtime"], r["provider"], r["precision"]) for r in rep["artifacts"]]
    assert rows == [
        ("m.packed.pth.tar", "torch", "torch:cpu", "f32"),
        ("m.onnx", "onnxruntime", "CPUExecutionProvider", "f32"),
        ("m.onnx", "openvino", "OpenVINO:CPU", "f32"),
        ("m32.onnx", "onnxruntime", "CPUExecutionProvider", "f32"),
        ("m32.onnx", "openvino", "OpenVINO:CPU", "f32"),
    ]
    for r in rep["artifacts"]:
        assert r["passed"] and r["max_abs_logit_diff"] <= 1e-4 and "kernels" in r
    assert rep["artifacts"][2]["kernels"].startswith("conv: ")
    assert "OpenVINO:CPU" in res.stdout and "kernels: m.onnx on openvino: conv:" in res.stdout


def test_runtime_is_repeatable_and_default_is_ort(files: dict[str, Path]) -> None:
    kw = {"dataset": "CIFAR100", "data_root": files["data"], "device": "cpu", "limit": 8}
    assert [a.runtime for a in verify([files["packed"], files["onnx"]], **kw).artifacts] == ["torch", "onnxruntime"]
    r = verify([files["packed"], files["onnx"]], runtime=["openvino", "ort"], **kw)
    assert [a.runtime for a in r.artifacts] == ["torch", "onnxruntime", "openvino"]  # RUNTIMES order
    assert resolve_runtimes("all") == list(RUNTIMES)
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        resolve_runtimes(["tensorrt"])


def test_bench_runtime_all_rows_in_json(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    res = invoke(
        "bench",
        str(files["onnx"]),
        str(files["packed"]),
        "--runtime",
        "all",
        "--seconds",
        "0.3",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--json-out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["runtimes"] == ["onnxruntime", "openvino"]
    rows = [(Path(r["path"]).name, r["runtime"], r["provider"], r["precision"]) for r in rep["rows"]]
    assert rows == [
        ("m.onnx", "onnxruntime", "CPUExecutionProvider", "f32"),
        ("m.onnx", "openvino", "OpenVINO:CPU", "f32"),
        ("m.packed.pth.tar", "torch", "torch:cpu", "f32"),
    ]
    assert all("kernels" in r for r in rep["rows"])  # ONNX Runtime's kernels: the int8 helper's half
    assert rep["rows"][1]["kernels"].startswith("conv: ") and rep["rows"][1]["images_per_s"] > 0
    # the table labels OpenVINO rows "OV" (80 columns; the title names the device, the JSON the full provider)
    assert re.search(r"^\s+OV\s*$", res.stdout, re.M) and "kernels: m.onnx on openvino" in res.stdout


@pytest.mark.parametrize("command", ["verify", "bench"])
def test_device_cuda_with_openvino_is_one_line_exit_2(files: dict[str, Path], command: str) -> None:
    extra = (
        ["--dataset", "CIFAR100", "--data-root", str(files["data"])] if command == "verify" else ["--seconds", "0.1"]
    )
    res = invoke(command, str(files["packed"]), str(files["onnx"]), "--runtime", "openvino", "--device", "cuda", *extra)
    assert_refused(res)
    assert "--device cuda: binexport runs OpenVINO on the CPU only" in res.stderr


@pytest.fixture
def no_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a machine without the extra: ``import openvino`` fails as it would there."""
    real = builtins.__import__

    def fake(name: str, *args: object, **kwargs: object) -> object:
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake)


@pytest.mark.parametrize("command", ["verify", "bench"])
def test_missing_extra_is_one_line_naming_the_install_command(
    files: dict[str, Path], no_openvino: None, command: str
) -> None:
    extra = (
        ["--dataset", "CIFAR100", "--data-root", str(files["data"])] if command == "verify" else ["--seconds", "0.1"]
    )
    res = invoke(command, str(files["packed"]), str(files["onnx"]), "--runtime", "openvino", *extra)
    assert_refused(res)
    assert res.stderr == f"binexport: error: {INSTALL_HINT}\n"
    assert 'pip install "binexport[openvino]"' in res.stderr
    with pytest.raises(InputError, match=r"binexport\[openvino\]"):
        open_artifact(files["onnx"], runtime="openvino")


def test_missing_extra_leaves_runtime_all_and_the_default_unchanged(files: dict[str, Path], no_openvino: None) -> None:
    assert resolve_runtimes("all") == ["onnxruntime"]
    r = verify(
        [files["packed"], files["onnx"]],
        dataset="CIFAR100",
        data_root=files["data"],
        device="cpu",
        runtime="all",
        limit=8,
    )
    assert [a.runtime for a in r.artifacts] == ["torch", "onnxruntime"] and r.passed


def test_real_checkpoint_on_openvino_matches_on_the_real_samples(tmp_path: Path) -> None:
    """The published WRN-20-10's 1-bit ONNX on OpenVINO: 16 of the 20 real CIFAR-100 samples, within 1e-4."""
    if not REAL_PACKED.is_file():
        pytest.skip(f"real data not found at {REAL_PACKED}")
    from binexport import load

    onnx = tmp_path / "real.onnx"
    onnx.write_bytes(formats.get("onnx").write(load(REAL_PACKED)))
    r = verify([REAL_PACKED, onnx], images=CIFAR100_SAMPLES, device="cpu", runtime="openvino", batch_size=20)
    row = r.artifacts[1]
    assert row.runtime == "openvino" and row.top1_correct == 16 and row.passed, row.problems
    assert row.max_abs_logit_diff is not None and row.max_abs_logit_diff <= 1e-4


@pytest.mark.parametrize(
    "opts",
    [
        {"weights": "float16"},
        {"normalize_inside": True},
        {"batch": 4},
        {"weights": "float32", "batch": 3, "normalize_inside": True},
    ],
)
def test_every_input_kind_and_fixed_batch_runs_on_openvino_like_on_ort(tmp_path: Path, opts: dict) -> None:
    """float16 NCHW, uint8 NHWC, fixed batches (last chunk padded, then cut): OpenVINO within the weights'
    tolerance of the reference, as ONNX Runtime is."""
    from binexport.data import normalize
    from binexport.runtimes import select_input
    from binexport.runtimes.torch_ref import reference_logits

    model = tiny_model(depth=8, width=0.5, num_classes=10, seed=4)
    path = tmp_path / "x.onnx"
    path.write_bytes(formats.get("onnx").write(model, **opts))
    pixels = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    ref = reference_logits(model, normalize(pixels))
    a = open_artifact(path, runtime="openvino")
    y = a.session.logits(select_input(a.session.input_kind, pixels, normalize(pixels)), 4)
    tol = check.TOLERANCES[a.weights]
    assert y.shape == ref.shape and np.abs(y - ref).max() <= tol.max_abs_logit_diff
    assert a.session.fixed_batch == opts.get("batch")
