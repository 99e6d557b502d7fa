"""bench: each artifact in its own process, interleaved timing, a JSON report (no timings are asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import invoke
from support.refusals import assert_refused

from binexport import bench
from binexport.errors import InputError
from binexport.verbs.bench import BenchRow


@pytest.fixture(scope="module")
def two(artifacts) -> list[Path]:
    made = artifacts(depth=8, width=0.5)
    return [made["packed"], made["1-bit"]]


def test_cli_bench_two_artifacts_writes_valid_json(two: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = invoke(
        "bench", *map(str, two), "--seconds", "0.5", "--batch-size", "4", "--threads", "1", "--json-out", str(out)
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["schema_version"] == 1 and rep["batch_size"] == 4 and rep["threads"] == 1
    a, b = rep["rows"]
    assert (a["format"], a["weights"], a["runtime"]) == ("packed", "1-bit", "torch")
    assert (b["format"], b["weights"], b["runtime"], b["provider"]) == (
        "onnx",
        "1-bit",
        "onnxruntime",
        "CPUExecutionProvider",
    )
    for row in (a, b):
        assert row["file_bytes"] == Path(row["path"]).stat().st_size
        assert row["images_per_s"] > 0 and row["peak_rss_bytes"] > 0 and row["load_s"] > 0
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"]
    assert a["speed_ratio"] == 1.0
    assert b["speed_ratio"] == pytest.approx(b["images_per_s"] / a["images_per_s"])
    assert b["size_ratio"] == pytest.approx(b["file_bytes"] / a["file_bytes"])
    assert "m.onnx" in res.stdout and "speed" in res.stdout


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "--batch-size must be 1..4096"),
        ({"seconds": float("nan")}, "--seconds must be"),
        ({"seconds": 0.0}, "--seconds must be"),
        ({"threads": -1}, "--threads must be"),
    ],
)
def test_bad_options_are_refused(two: list[Path], kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        bench(two, **kwargs)


def test_foreign_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model at all")
    res = invoke("bench", str(bad), "--seconds", "0.5")
    assert_refused(res, match="unrecognised file")


def test_no_artifact_is_refused() -> None:
    with pytest.raises(InputError, match="at least one"):
        bench([])


def _row(path: str, weights: str, runtime: str, kernels: str) -> BenchRow:
    return BenchRow(path, "onnx", weights, runtime, "CPU", 1, 0.1, 1, 1, 1.0, 1.0, 1.0, 64, kernels=kernels)


# the kernel strings as the runtimes reported them on the real WRN-20-10 (AMD EPYC, 2026-12-06)
OV_ZP1 = "conv: brgconv_avx512_f32 x19, brgconv_avx512_1x1_f32 x1; other: jit_avx512_f32 x25, jit_avx512_i8 x18"
OV_ZP0_AMX = "conv: brgconv_avx512_amx_I8 x18, brgconv_avx512_f32 x1; other: jit_avx512_f32 x25"
ORT_ZP0 = "18 QLinearConv (MLAS symmetric direct conv: weight zp = 0; no AMX), 3 Conv (MLAS NCHWc)"
ORT_ZP1 = "18 QLinearConv (MLAS QGEMM: weight zp != 0; AMX on this CPU), 3 Conv (MLAS NCHWc)"


def test_kernel_notes_say_when_an_int8_file_misses_its_runtimes_int8_kernels() -> None:
    from binexport.verbs.bench import kernel_notes

    amx = ["avx512_vnni", "amx_int8"]
    # zero point 1 on OpenVINO: float32 convs, on any CPU
    notes = kernel_notes([_row("/x/m-zp1.onnx", "int8", "openvino", OV_ZP1)], ["avx512_vnni"])
    assert len(notes) == 1 and "m-zp1.onnx on OpenVINO" in notes[0] and "--weight-zero-point 0" in notes[0]
    # zero point 0 on ONNX Runtime: a note only where the CPU has AMX
    assert kernel_notes([_row("m.onnx", "int8", "onnxruntime", ORT_ZP0)], ["avx512_vnni"]) == []
    notes = kernel_notes([_row("m.onnx", "int8", "onnxruntime", ORT_ZP0)], amx)
    assert len(notes) == 1 and "--runtime openvino" in notes[0] and "--weight-zero-point 1" in notes[0]
    # the right kernel, a float file, or no report: nothing to say
    rows = [
        _row("a.onnx", "int8", "openvino", OV_ZP0_AMX),
        _row("b.onnx", "int8", "onnxruntime", ORT_ZP1),
        _row("c.onnx", "float32", "openvino", OV_ZP1),
        _row("d.onnx", "int8", "openvino", ""),
    ]
    assert kernel_notes(rows, amx) == []
