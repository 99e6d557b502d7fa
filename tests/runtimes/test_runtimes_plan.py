"""The run plan: verify's and bench's one fan-out of files x runtimes, runtime ids and their alias, run folders,
the one batch-size bound, and a runtimes package whose children never import its face."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from support.cli import invoke
from support.models import tiny_model
from support.paths import ROOT
from support.refusals import assert_refused

from binexport import bench, formats, verify
from binexport.errors import InputError
from binexport.runtimes import openvino
from binexport.runtimes.base import MAX_BATCH_SIZE, check_batch_size
from binexport.runtimes.plan import (
    DEFAULT_RUNTIME,
    REFERENCE_RUNTIME,
    RUNTIME_ALIASES,
    RUNTIME_CHOICES,
    RUNTIMES,
    Run,
    plan_runs,
    resolve_runtimes,
    runtime_id,
)

RUNTIMES_DIR = ROOT / "binexport" / "runtimes"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plan")
    model = tiny_model(depth=8, width=0.5)
    out = {"packed": d / "m.packed.pth.tar", "onnx": d / "m.onnx", "bwn": d / "m.bwn"}
    for name, p in out.items():
        p.write_bytes(formats.get(name).write(model))
    return out


def test_the_alias_gives_the_one_runtime_id() -> None:
    assert runtime_id("ort") == runtime_id("onnxruntime") == "onnxruntime" == DEFAULT_RUNTIME
    assert RUNTIME_ALIASES == {"ort": "onnxruntime"} and REFERENCE_RUNTIME == "torch"
    assert set(RUNTIME_CHOICES) == {*RUNTIMES, "ort", "all"}
    assert resolve_runtimes(["ort", "onnxruntime"]) == ["onnxruntime"]  # an alias and its id: one runtime
    with pytest.raises(InputError, match="unknown runtime 'torch'"):
        runtime_id("torch")  # the reference runs model files only; no ONNX file is asked of it


def test_mixed_files_x_runtimes_give_one_row_each_in_order(files: dict[str, Path]) -> None:
    wanted = ["ort", "openvino"] if openvino.available() else ["ort"]
    plan = plan_runs([files["onnx"], files["packed"], files["bwn"]], wanted, "f32", "cpu")
    rows = [(r.path.name, r.runtime, r.device, r.compute) for r in plan.runs]
    onnx_rows = [("m.onnx", rt, "cpu", "f32") for rt in RUNTIMES if rt in [runtime_id(w) for w in wanted]]
    assert rows == [*onnx_rows, ("m.packed.pth.tar", "torch", "cpu", "f32"), ("m.bwn", "torch", "cpu", "f32")]
    assert plan.runtimes == [r for _, r, _, _ in onnx_rows] and plan.device == "cpu"
    assert plan.runs[0].label == f"m.onnx ({onnx_rows[0][1]})"


@pytest.mark.skipif(not openvino.available(), reason="OpenVINO is not installed")
def test_bf16_is_asked_of_openvino_rows_only(files: dict[str, Path]) -> None:
    plan = plan_runs([files["onnx"], files["packed"]], "all", "bf16", "cpu")
    assert [(r.runtime, r.compute) for r in plan.runs] == [
        ("onnxruntime", "f32"),
        ("openvino", "bf16"),
        ("torch", "f32"),
    ]


def test_the_plan_refuses_options_before_it_reads_any_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(InputError, match="add --runtime openvino"):
        plan_runs([missing], "ort", "bf16", "cpu")
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        plan_runs([missing], ["tensorrt"], "f32", "cpu")
    with pytest.raises(InputError, match="nowhere.onnx"):
        plan_runs([missing], "ort", "f32", "cpu")  # options fine: now the file


def test_a_run_folder_is_planned_as_its_checkpoint(make_run) -> None:
    ckpt = make_run()
    [run] = plan_runs([ckpt.parent], device="cpu").runs
    assert run == Run(ckpt, "torch", "cpu", "f32")


def test_bench_takes_a_run_folder_like_verify(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    out = tmp_path / "bench.json"
    r = invoke("bench", ckpt.parent, "--seconds", "0.2", "--batch-size", "2", "--device", "cpu", "--json-out", out)
    assert r.exit_code == 0, r.output
    [row] = json.loads(out.read_text())["rows"]
    assert row["path"] == str(ckpt) and row["runtime"] == "torch" and row["format"] == "checkpoint"


def test_ort_alias_on_the_cli_reports_the_runtime_id(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = invoke("bench", str(files["onnx"]), "--runtime", "ort", "--seconds", "0.2", "--batch-size", "2",
               "--device", "cpu", "--json", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["runtimes"] == ["onnxruntime"] and rep["rows"][0]["runtime"] == "onnxruntime"


def test_one_batch_size_bound_for_every_verb(files: dict[str, Path]) -> None:
    assert check_batch_size(1) == 1 and check_batch_size(MAX_BATCH_SIZE) == MAX_BATCH_SIZE
    for bad in (0, -1, MAX_BATCH_SIZE + 1, True, 2.0):
        with pytest.raises(InputError, match=f"--batch-size must be 1..{MAX_BATCH_SIZE}"):
            check_batch_size(bad)  # type: ignore[arg-type]
    # the library's verify and bench hold the same bound as the CLI
    with pytest.raises(InputError, match=f"--batch-size must be 1..{MAX_BATCH_SIZE}"):
        verify([files["packed"]], images=files["packed"].parent, batch_size=MAX_BATCH_SIZE + 1)
    with pytest.raises(InputError, match=f"--batch-size must be 1..{MAX_BATCH_SIZE}"):
        bench([files["packed"]], batch_size=0)
    for verb in ("verify", "bench"):
        extra = ["--dataset", "CIFAR10"] if verb == "verify" else []
        assert_refused(invoke(verb, files["packed"], "--batch-size", str(MAX_BATCH_SIZE + 1), *extra))


def test_no_runtime_module_imports_the_package_face() -> None:
    """The face re-exports; its children import base, plan, cpu... and never ``binexport.runtimes`` itself."""
    for path in sorted(RUNTIMES_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "binexport.runtimes":
                bad = [a.name for a in node.names]
                pytest.fail(f"{path.name} imports {bad} from the package face")
            if isinstance(node, ast.Import):
                assert all(a.name != "binexport.runtimes" for a in node.names), path.name
