"""int2 ONNX: exact 1-bit weights kept as INT2 codes by ONNX Runtime, each DequantizeLinear waiting for its conv.

The checks that an ONNX Runtime upgrade could break are read from ORT's own optimised graph and its profile
(which nodes ran, in which order), not from timings; one memory check (resident weights and a batch-1 peak
bound in a worker process) backs them up on a model whose float weights are tens of MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from helpers import CIFAR100_SAMPLES, tiny_model
from onnx import numpy_helper

from binexport import check, export_onnx, verify
from binexport.cli import main
from binexport.errors import InputError
from binexport.formats import onnx as fmt
from binexport.formats.onnx import int2
from binexport.formats.onnx.bounds import check_onnx_bounds
from binexport.runtimes import resolve_runtimes

MIB = 2**20


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return tiny_model(depth=8, width=1, num_classes=10)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("int2") / "m-int2.onnx"
    return out, export_onnx(model, out, weights="int2")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 33, 1000])
def test_int2_codes_read_back_by_onnx_itself(n: int) -> None:
    """Independent oracle: onnx's own INT2 reader gives -1/+1 where the signs say, for any length."""
    signs = np.random.default_rng(n).random(n) > 0.5
    bw = type("BW", (), {"shape": (n,), "signs": signs, "scale": 1.0})()
    t = int2.int2_tensor("w", bw)  # type: ignore[arg-type]
    assert t.data_type == onnx.TensorProto.INT2 and len(t.raw_data) == -(-n // 4)
    want = np.where(signs, 1, -1)
    assert np.array_equal(numpy_helper.to_array(t).astype(np.int8), want)
    assert np.array_equal(int2.unpack_codes(t.raw_data, n), want)
    zeros = np.arange(0, n, 3)  # exact-zero weights (BinaryWeight.zeros) are code 0
    want[zeros] = 0
    t.raw_data = int2.pack_codes(signs, zeros)
    assert np.array_equal(numpy_helper.to_array(t).astype(np.int8), want)


def test_export_is_exact_int2_at_opset_25(model, exported) -> None:  # type: ignore[no-untyped-def]
    path, report = exported
    assert report.weights == "int2" and report.opset == int2.MIN_OPSET == fmt.WEIGHTS_OPSET["int2"]
    v = report.validation
    assert v.passed and v.tolerance == check.TOLERANCES["int2"].max_abs_logit_diff == 1e-4 and v.agreement == 1.0
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["binexport.weights"] == "int2"
    inits = {t.name: t for t in proto.graph.initializer}
    for name in model.binary:  # the block convs, and conv0 / conv_last where binarised
        t = inits[name + ".int2"]
        codes = numpy_helper.to_array(t).astype(np.int8)
        assert t.data_type == onnx.TensorProto.INT2 and codes.shape == model.binary[name].shape
        assert np.array_equal(codes, np.where(model.binary[name].signs, 1, -1))
        assert np.all(numpy_helper.to_array(inits[name + ".scale"]) == np.float32(model.binary[name].scale))


def _optimized(path: Path, tmp: Path) -> tuple[onnx.GraphProto, list[str]]:
    """ONNX Runtime's optimised graph (default options, as a deployment gets) and the order its nodes ran in."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(tmp / "optimized.onnx")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "profile")
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    s.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    events = json.loads(Path(s.end_profiling()).read_text())
    ran = [e["name"].removesuffix("_kernel_time") for e in events if e.get("cat") == "Node"]
    return onnx.load(opts.optimized_model_filepath).graph, [r for r in ran if r]


def test_onnx_runtime_keeps_the_weights_packed_and_each_dq_waits_for_its_conv(model, exported, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ORT's own graph: every binarised conv still takes DequantizeLinear(INT2 initializer), no float copy of its
    weight is an initializer, and the DQ's scale depends on the conv's input; its profile: each DQ ran after the
    previous conv. An ORT that folds DQs (or hoists them) fails here."""
    path, _ = exported
    graph, ran = _optimized(path, tmp_path)
    made = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    float_shapes = {tuple(t.dims) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in made]
    dqs = []
    for conv in convs:
        dq = made[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == onnx.TensorProto.INT2
        assert tuple(inits[dq.input[0]].dims) not in float_shapes
        add = made[dq.input[1]]
        mul = next(made[i] for i in add.input if i in made)
        low = next(made[i] for i in mul.input if i in made)
        assert (add.op_type, mul.op_type, low.op_type) == ("Add", "Mul", "ReduceMin")
        assert low.input[0] == conv.input[0], "the DQ must wait for its own conv's input"
        dqs.append((dq.name, conv.name))
    assert len(dqs) == len(model.binary) > 2
    assert len([t for t in graph.initializer if t.data_type == onnx.TensorProto.INT2]) == len(dqs)
    order = {name: i for i, name in enumerate(ran)}
    for (dq, _), (_, before) in zip(dqs[1:], dqs[:-1], strict=True):
        assert order[dq] > order[before], f"{dq} ran before {before}: the DQs were hoisted"


def _worker(path: Path) -> tuple[dict, dict]:
    """The bench worker's load answer and quit answer after two batch-1 calls (one thread)."""
    r = subprocess.run(
        [sys.executable, "-m", "binexport.runtimes.worker", str(path), "cpu", "1"],
        input='{"cmd": "time", "batch": 1, "iters": 2}\n{"cmd": "quit"}\n',
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines and lines[0]["ok"], r.stderr[-500:]
    return lines[0], lines[-1]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="resident memory is read from /proc (Linux)")
def test_resident_weights_and_batch1_peak_stay_far_below_the_float_weights(tmp_path: Path) -> None:
    """WRN-14-10 (65 MiB of float weights): the session holds ~5 MiB, and the batch-1 peak above the runtime
    stays below the float weights alone (measured 41 MiB; 130 MiB with every DQ run first, 210 MiB as float32)."""
    m = tiny_model(depth=14, width=10, num_classes=10)
    path = tmp_path / "w14-10-int2.onnx"
    path.write_bytes(fmt.write(m, weights="int2"))
    float_bytes = sum(4 * bw.signs.size for bw in m.binary.values())
    hello, bye = _worker(path)
    assert hello["weights"] == "int2"
    assert hello["rss_weights"] < float_bytes / 4, (hello["rss_weights"] / MIB, float_bytes / MIB)
    assert bye["peak_rss"] - hello["rss_before_load"] < float_bytes, (bye["peak_rss"] / MIB, float_bytes / MIB)


def test_full_precision_and_old_opsets_are_refused(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="full-precision model"):
        fmt.write(tiny_model(depth=8, width=1, binarized=False), weights="int2")
    with pytest.raises(InputError, match="needs opset 25"):
        fmt.write(model, weights="int2", opset=24)
    assert fmt.check_options(model, "1-bit")[1] == fmt.DEFAULT_OPSET  # the others keep opset 18


def test_cli_old_opset_is_one_line_exit_2(tmp_path: Path) -> None:
    from binexport.formats import packed

    src = tmp_path / "m.packed.pth.tar"
    src.write_bytes(packed.write(tiny_model(depth=8, width=1)))
    res = CliRunner().invoke(main, ["to-onnx", str(src), "--weights", "int2", "--opset", "24"])
    assert res.exit_code == 2 and "pass --opset 25" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_bounds_refuse_an_int2_tensor_that_lies_about_its_size(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = exported
    check_onnx_bounds(path)  # the real file passes
    proto = onnx.load(str(path))
    t = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT2)
    t.raw_data = t.raw_data[:-1]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(InputError, match="corrupt or crafted"):
        check_onnx_bounds(bad)


@pytest.mark.skipif(resolve_runtimes("all") != ["onnxruntime", "openvino"], reason="OpenVINO is not installed")
def test_openvino_refusal_is_a_note_in_bench_not_a_failure(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from binexport import bench

    path, _ = exported
    r = bench([path], batch_size=2, seconds=0.2, device="cpu", threads=1, runtime="all")
    assert [row.runtime for row in r.rows] == ["onnxruntime"]
    assert r.rows[0].weights_rss_bytes is not None and r.rows[0].weights_rss_bytes >= 0
    assert any("OpenVINO did not run it" in n and "INT2" in n for n in r.notes)


@pytest.mark.slow
def test_real_checkpoint_int2_is_exact_on_the_real_samples(real_packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "wrn20-10-int2.onnx"
    rep = export_onnx(real_packed, out, weights="int2", images=CIFAR100_SAMPLES)
    v = rep.validation
    assert v.passed and v.max_abs_diff <= 1e-4 and v.agreement == 1.0 and v.accuracy == v.reference_accuracy
    assert out.stat().st_size < 8 * MIB  # 26.7 M weights at 2 bits: 6.4 MiB, plus the float layers
    r = verify([real_packed, out], images=CIFAR100_SAMPLES, runtime="all")
    row = r.artifacts[-1]
    assert r.passed and row.weights == "int2" and row.runtime == "onnxruntime" and row.max_abs_logit_diff <= 1e-4
    if "openvino" in r.runtimes:
        assert any("OpenVINO did not run it" in n for n in row.notes)
