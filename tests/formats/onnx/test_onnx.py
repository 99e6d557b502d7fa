"""to-onnx: every weight mode and batch kind against an independent reference, metadata, sizes, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.models import normalized_batch
from support.paths import CIFAR100_SAMPLES, ROOT
from support.refusals import assert_refused
from support.spec_reference import spec_forward

from binexport import check
from binexport.data.synth import make_arch, random_state
from binexport.errors import InputError
from binexport.formats import onnx as fmt
from binexport.model import CIFAR_MEAN, CIFAR_STD, Model, binarize
from binexport.runtimes.ort import open_session
from binexport.verbs.export import export_onnx

PACKED_CKPT_BYTES = 3_682_907  # the published checkpoint, per the SPEC


def _model(width: float = 1, binarized: bool = True, depth: int = 8, classes: int = 10) -> tuple[Model, dict]:
    arch = make_arch(depth, width, classes)
    params = random_state(arch, seed=3)
    m = Model(arch, False, params)
    return (binarize(m) if binarized else m), params


def _logits(path: Path, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    s = open_session(str(path))
    if batch is None:
        return s.run(x)
    return np.concatenate([s.run(x[i : i + batch], batch) for i in range(0, len(x), batch)])


@pytest.mark.parametrize("width", [1, 0.5625])  # 16 channels, and 9 (in % 8 != 0, out*in*9 % 8 != 0)
def test_every_mode_and_batch_matches_the_spec_forward(tmp_path: Path, width: float) -> None:
    model, params = _model(width)
    x = normalized_batch(6, seed=1)
    ref = spec_forward(params, x, binarize=True)
    got = {}
    for weights in ("1-bit", "float32", "float16"):
        for batch in ("dynamic", 3):
            out = tmp_path / f"{weights}-{batch}.onnx"
            r = export_onnx(model, out, weights=weights, batch=batch)
            assert r.validation.passed and r.output_bytes == out.stat().st_size
            s = open_session(str(out))
            dims = s.session.get_inputs()[0].shape
            assert dims == (["N", 3, 32, 32] if batch == "dynamic" else [3, 3, 32, 32])
            y = _logits(out, x, None if batch == "dynamic" else 3)
            assert y.shape == (6, 10)
            assert np.abs(y - ref).max() <= check.TOLERANCES[weights].max_abs_logit_diff
            assert np.mean(y.argmax(1) == ref.argmax(1)) >= check.TOLERANCES[weights].min_agreement
            got[weights, batch] = y
    # the packed graph unpacks to exactly the float32 weights: bit-identical logits
    assert np.array_equal(got["1-bit", "dynamic"], got["float32", "dynamic"])
    assert np.array_equal(got["1-bit", 3], got["float32", 3])


@pytest.mark.parametrize(
    "weights,inside,expected",
    [
        ("1-bit", False, ("float32-nchw-normalized", "tensor(float)", "tensor(float)")),
        ("float32", True, ("uint8-nhwc", "tensor(uint8)", "tensor(float)")),
        ("float16", False, ("float16-nchw-normalized", "tensor(float16)", "tensor(float16)")),
        ("float16", True, ("uint8-nhwc", "tensor(uint8)", "tensor(float16)")),
    ],
)
def test_metadata_present_and_input_type_agrees(weights: str, inside: bool, expected: tuple[str, str, str]) -> None:
    import onnx

    from binexport import __version__

    model, _ = _model(0.75)
    data = fmt.write(model, weights=weights, normalize_inside=inside, source_sha256="ab" * 32)
    proto = onnx.load_from_string(data)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["binexport.architecture"] == "WRN-8-0.75"
    assert meta["binexport.num_classes"] == "10"
    assert json.loads(meta["binexport.normalization"]) == {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    assert meta["binexport.weights"] == weights
    assert meta["binexport.input"] == expected[0]
    assert meta["binexport.source_sha256"] == "ab" * 32
    assert meta["binexport.version"] == __version__
    assert proto.opset_import[0].version == 18
    s = open_session(data)
    assert (s.input_type, s.session.get_outputs()[0].type) == expected[1:]
    assert s.session.get_inputs()[0].shape == (["N", 32, 32, 3] if inside else ["N", 3, 32, 32])
    assert s.session.get_outputs()[0].shape == ["N", 10]
    assert fmt.sniff(data[:16])
    ops = {n.op_type for n in proto.graph.node}
    assert not {n.domain for n in proto.graph.node} - {""}  # standard operators only
    assert ("Gather" in ops) == (weights == "1-bit")


def test_normalize_inside_equals_outside_normalisation(tmp_path: Path) -> None:
    from binexport.data import normalize

    model, _ = _model()
    raw = np.random.default_rng(5).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    export_onnx(model, tmp_path / "in.onnx", normalize_inside=True)
    export_onnx(model, tmp_path / "out.onnx")
    inside = _logits(tmp_path / "in.onnx", raw)
    outside = _logits(tmp_path / "out.onnx", normalize(raw))
    assert np.array_equal(inside, outside)


def test_packed_size_within_10_percent_of_the_packed_checkpoint(tmp_path: Path) -> None:
    from binexport.formats import packed

    model, _ = _model(width=4, depth=14, classes=100)  # 64..256 channels: bits dominate, as in WRN-20-10
    ckpt = len(packed.write(model))
    onnx_bytes = len(fmt.write(model))
    f32 = len(fmt.write(model, weights="float32"))
    assert onnx_bytes <= 1.10 * ckpt
    assert f32 > 20 * onnx_bytes


def test_real_packed_size(real_packed: Path) -> None:
    from binexport import load

    size = len(fmt.write(load(real_packed)))
    assert size <= 3_900_000 and size <= 1.10 * PACKED_CKPT_BYTES


def test_cli_training_checkpoint_default_output_and_json(make_run) -> None:
    ckpt = make_run(width=0.75)
    res = invoke("to-onnx", str(ckpt), "--json", "--batch", "4")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["output"] == str(ckpt.with_name("checkpoint.onnx")) and Path(d["output"]).is_file()
    assert (d["weights"], d["batch"], d["opset"], d["input_format"]) == ("1-bit", 4, 18, "checkpoint")
    assert d["validation"]["passed"] and d["validation"]["max_abs_diff"] <= 1e-4
    assert d["output_bytes"] == Path(d["output"]).stat().st_size
    again = invoke("to-onnx", str(ckpt))
    assert_refused(again, match="--force")
    table = invoke("to-onnx", str(ckpt), "--force", "--weights", "float16", "--opset", "17")
    assert table.exit_code == 0 and "float16 / 17 / dynamic" in table.output and "passed" in table.output


@pytest.mark.parametrize("bad", ["0", "-3", "1.5", "many"])
def test_bad_batch_is_one_line_exit_2(make_run, tmp_path: Path, bad: str) -> None:
    res = invoke("to-onnx", str(make_run()), "-o", str(tmp_path / "a.onnx"), "--batch", bad)
    assert_refused(res, match="expected 'dynamic' or a fixed batch of 1..4096 images")
    assert not (tmp_path / "a.onnx").exists()


def test_mode_flags_for_a_checkpoint_without_log(make_run, tmp_path: Path) -> None:
    ckpt = make_run(with_log=False)
    res = invoke("to-onnx", str(ckpt), "-o", str(tmp_path / "a.onnx"))
    assert_refused(res, match="--binarized or --full-precision")
    res = invoke("to-onnx", str(ckpt), "-o", str(tmp_path / "a.onnx"), "--binarized", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["weights"] == "1-bit"


def test_full_precision_packed_refused_and_defaults_to_float32(make_run, tmp_path: Path) -> None:
    ckpt = make_run(binarize=False)
    res = invoke("to-onnx", str(ckpt), "--weights", "packed", "-o", str(tmp_path / "a.onnx"))
    assert_refused(res, match=("full-precision", "float32"))
    assert not (tmp_path / "a.onnx").exists()
    res = invoke("to-onnx", str(ckpt), "-o", str(tmp_path / "b.onnx"), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["weights"] == "float32" and not json.loads(res.output)["binarized"]


@pytest.mark.parametrize("option", [["--batch", "0"], ["--opset", "9"], ["--weights", "int4"]])
def test_bad_options_exit_2(make_run, option: list[str]) -> None:
    ckpt = make_run()
    res = invoke("to-onnx", str(ckpt), *option)
    assert_refused(res)
    assert not list(ckpt.parent.glob("*.onnx"))


def test_failure_path_exits_1_names_worst_output_and_leaves_no_file(make_run, monkeypatch) -> None:
    ckpt = make_run()
    from binexport.formats.onnx import graph

    real_table = graph.scale_table

    def broken(bits: int, scale: float, dtype: object) -> np.ndarray:  # byte 0xFF unpacks to all -scale
        t = real_table(bits, scale, dtype)
        t[-1] = -t[-1]
        return t

    monkeypatch.setattr(graph, "scale_table", broken)
    res = invoke("to-onnx", str(ckpt))
    assert_refused(res, code=1)
    assert "worst output" in res.output and "no file written" in res.output
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["checkpoint.pth.tar", "log.txt"]


def test_checker_failure_is_a_check_error(make_run, monkeypatch) -> None:
    real_write = fmt.write

    def broken(model: Model, **options: object) -> bytes:  # a Conv with a missing weight input
        import onnx

        proto = onnx.load_from_string(real_write(model, **options))
        conv = next(n for n in proto.graph.node if n.op_type == "Conv")
        conv.input[1] = "no_such_tensor"
        return proto.SerializeToString()

    monkeypatch.setattr(fmt, "write", broken)
    ckpt = make_run()
    res = invoke("to-onnx", str(ckpt))
    assert_refused(res, code=1, match="onnx.checker")
    assert not ckpt.with_name("checkpoint.onnx").exists()


def test_sniff_and_read_refuses_onnx(tmp_path: Path) -> None:
    from binexport import load

    model, _ = _model()
    path = tmp_path / "m.onnx"
    path.write_bytes(fmt.write(model, weights="float32"))
    others = (b"PK\x03\x04" + bytes(12), b"\x80\x02\x8a\x0a" + bytes(12), b"BWN1" + bytes(12), b"", b"\x08")
    assert not any(fmt.sniff(h) for h in others)
    with pytest.raises(InputError, match="binexport verify"):
        load(path)
    with pytest.raises(InputError, match="no option encoding"):
        fmt.write(model, encoding="lut")


@pytest.mark.slow  # the real WRN-20-10 in every mode (~40 s loaded); the spec-forward tests cover each mode on tiny models
def test_real_checkpoint_every_mode_on_cifar100_samples(real_packed: Path, tmp_path: Path) -> None:
    """The published WRN-20-10: same top-1 as the PyTorch reference on the 20 real images, 16 correct."""
    from binexport import load
    from binexport.data import normalize
    from binexport.data.png import load_labelled_folder
    from binexport.runtimes.torch_ref import reference_logits

    model = load(real_packed)
    raw, labels, _ = load_labelled_folder(CIFAR100_SAMPLES)
    ref = reference_logits(model, normalize(raw)).argmax(1)
    assert int(np.sum(ref == labels)) == 16
    for weights, inside in (("1-bit", False), ("float32", False), ("float16", False), ("1-bit", True)):
        out = tmp_path / f"{weights}{'-inside' if inside else ''}.onnx"
        with_images = weights == "1-bit" and not inside  # the --images path once; the check below covers all
        r = export_onnx(
            model, out, weights=weights, normalize_inside=inside, images=CIFAR100_SAMPLES if with_images else None
        )
        assert r.validation.passed and r.output_bytes == out.stat().st_size
        if with_images:
            assert r.validation.labelled_images == 20 and r.validation.accuracy == 0.8
        pred = _logits(out, raw if inside else normalize(raw)).argmax(1)
        assert np.array_equal(pred, ref) and int(np.sum(pred == labels)) == 16


# --- consumers other than ONNX Runtime --------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["float32", "1-bit"])
def test_onnx_reference_evaluator_matches_the_spec_forward(weights: str) -> None:
    from onnx.reference import ReferenceEvaluator

    model, params = _model(0.5625)  # 9 channels: odd widths through the zero-channel shortcut
    x = normalized_batch(2, seed=4)
    y = ReferenceEvaluator(fmt.build_model(model, weights=weights)).run(None, {"input": x})[0]
    assert np.abs(y - spec_forward(params, x, binarize=True)).max() <= check.TOLERANCES["float32"].max_abs_logit_diff


def test_graphs_use_no_pad_so_converters_without_opset_18_pad_load_them() -> None:
    model, _ = _model(0.5)
    from binexport.formats.onnx import int8

    ranges = {name: (-1.0, 1.0) for name in int8.required_ranges(model)}
    for weights in fmt.WEIGHTS:
        proto = fmt.build_model(model, weights=weights, int8_ranges=ranges)
        assert "Pad" not in {n.op_type for n in proto.graph.node}, weights


def test_onnx2torch_loads_the_float32_graph() -> None:
    import importlib.util
    import sys

    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("onnx2torch is an optional converter, not installed: pip install --no-deps onnx2torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_converters import stub_torchvision

    stub_torchvision()  # onnx2torch imports torchvision for NMS/RoIAlign only; a CPU torch may lack a matching one
    import torch
    from onnx2torch import convert

    model, params = _model(0.5625)
    x = normalized_batch(2, seed=5)
    with torch.no_grad():
        y = convert(fmt.build_model(model, weights="float32")).eval()(torch.from_numpy(x)).numpy()
    assert np.abs(y - spec_forward(params, x, binarize=True)).max() <= check.TOLERANCES["float32"].max_abs_logit_diff
