"""``OrtRuntime.kernels()``: what ONNX Runtime's own optimised graph runs, parsed back for every weight encoding."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.models import tiny_model

from binexport.formats.onnx import build_model, int8
from binexport.runtimes import ort as ort_rt
from binexport.runtimes import ort_kernels
from binexport.runtimes.ort import open_session
from binexport.runtimes.torch_ref import TorchRuntime

# WRN-8 at width 1: conv0, 2 convs in each of 3 blocks, conv_last. ORT may turn a BatchNormalization into a
# 1x1 NCHWc Conv of its own, so it reports at least this many Convs.
BLOCK_CONVS, OUTER_CONVS = 6, 2
_PART = re.compile(r"^(\d+) (\w+)(?: \((.*)\))?$")


def parse(text: str) -> list[tuple[int, str, str]]:
    """``"6 QLinearConv (note), 3 Conv"`` -> [(6, 'QLinearConv', 'note'), (3, 'Conv', '')]."""
    out = []
    for part in text.split(", "):
        m = _PART.match(part)
        assert m, f"unparseable kernel report part {part!r} in {text!r}"
        out.append((int(m[1]), m[2], m[3] or ""))
    return out


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    model = tiny_model()
    x = np.random.default_rng(0).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    ranges = TorchRuntime(model).activation_ranges(x, 99.999)
    out = {w: build_model(model, weights=w).SerializeToString() for w in ("float32", "1-bit")}
    for zp in int8.WEIGHT_ZERO_POINTS:
        out[f"int8-zp{zp}"] = build_model(
            model, weights="int8", int8_ranges=ranges, int8_weight_zero_point=zp
        ).SerializeToString()
    return out


@pytest.mark.parametrize("weights", ["float32", "1-bit"])
def test_float_graphs_report_only_convs(files: dict[str, bytes], weights: str) -> None:
    parts = parse(open_session(files[weights]).kernels())
    assert [op for _, op, _ in parts] == ["Conv"] and parts[0][0] >= BLOCK_CONVS + OUTER_CONVS
    assert parts[0][2].startswith("MLAS NCHWc")


@pytest.mark.parametrize("zp", int8.WEIGHT_ZERO_POINTS)
def test_int8_reports_the_mlas_path_its_weight_zero_points_select(files: dict[str, bytes], zp: int) -> None:
    parts = parse(open_session(files[f"int8-zp{zp}"]).kernels())
    by_op = {op: (n, note) for n, op, note in parts}
    assert set(by_op) == {"QLinearConv", "Conv"} and len(parts) == 2
    n, note = by_op["QLinearConv"]
    assert n == BLOCK_CONVS
    if zp:
        assert note.startswith("MLAS QGEMM: weight zp != 0") and "AMX" in note
    else:
        assert note == "MLAS symmetric direct conv: weight zp = 0; no AMX"
    assert OUTER_CONVS <= by_op["Conv"][0] < BLOCK_CONVS  # conv0 and conv_last stay float


def test_amx_wording_follows_the_cpu(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    for has, words in ((True, "AMX on this CPU"), (False, "this CPU has no AMX"), (None, "AMX where the CPU has it")):
        monkeypatch.setattr(ort_kernels, "has_amx", lambda has=has: has)
        assert words in open_session(files["int8-zp1"]).kernels()


def test_kernels_is_lazy_and_cached(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = ort_rt.optimized_ops
    monkeypatch.setattr(ort_rt, "optimized_ops", lambda *a, **k: calls.append(1) or real(*a, **k))
    rt = open_session(files["int8-zp0"])
    assert calls == []  # opening a session does not optimise the graph a second time
    first = rt.kernels()
    assert rt.kernels() is first and calls == [1]


def test_kernels_of_a_runtime_without_its_model_is_empty(files: dict[str, bytes]) -> None:
    rt = open_session(files["float32"])
    assert ort_rt.OrtRuntime(rt.session, rt.provider).kernels() == ""


def test_file_path_and_bytes_give_the_same_report(files: dict[str, bytes], tmp_path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(files["int8-zp1"])
    assert open_session(str(p)).kernels() == open_session(files["int8-zp1"]).kernels()
