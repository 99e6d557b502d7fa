"""Full-precision .bwn: the planes encoding, bf16, half-precision weights, goldens, pack/inspect/verify of floats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.bwn_spec_reader import lay_out, relay
from support.bwn_spec_reader import read as spec_read
from support.cli import invoke
from support.models import check_golden, tiny_model
from support.paths import GOLDEN

from binexport.errors import FormatError, InputError
from binexport.formats import bwn
from binexport.formats.bwn import codec, planes, planes_decode, rans
from binexport.formats.bwn import container as box
from binexport.model import Model
from binexport.precision import from_bfloat16_bits, round_weights, to_bfloat16_bits

#: sha256 of each full-precision golden (docs/FORMAT.md 13.4). Regenerate deliberately:
#: `BWN_REGENERATE_GOLDEN=1 pytest tests/formats/bwn/test_bwn_float.py -k golden`, paste the printed hashes.
GOLDEN_SHA256 = {
    "fp-f32.bwn": "5d5ff2332601c4a1c6e2a3b79bce91b7a782465c9b8746c62149e4778f3553d5",
    "fp-f16.bwn": "80dfe2047ebe290a26bde7138c8591b25bba126187750e940bc30fc1f36a4cd1",
    "fp-bf16.bwn": "e3e635575ad755368aada4ab6634fe00785857b65865a58c3446807d80fdf56a",
    "fp-specials.bwn": "46ae92996e4ee0074a5ab11a29a2ea62644977472cac5dd3afb1d2003c775ab8",
}
SPECIAL_BITS = np.array(
    [
        0x00000000,
        0x80000000,
        0x00000001,
        0x80000001,
        0x007FFFFF,
        0x00800000,
        0x7F7FFFFF,
        0xFF7FFFFF,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0x7F800001,
        0xFFFFFFFF,
        0x7FBFFFFF,
        0x7FA00001,
        0xDEADBEEF,
        0x3F800000,
        0x33800000,
    ],
    dtype=np.uint32,
)


def fp_model(specials: bool = False) -> Model:
    """WRN-8-0.5 (widths 8, 16, 32), 10 classes, seed 0, full precision; one all-zero block conv (raw bf16), one
    conv of values on a 1/64 grid (skewed mantissas: B tables of their own), and optionally special values."""
    m = tiny_model(depth=8, width=0.5, num_classes=10, seed=0, binarized=False)
    floats = dict(m.floats)
    floats["group2.block0.conv1"] = np.zeros_like(floats["group2.block0.conv1"])
    floats["group2.block0.conv0"] = (np.round(floats["group2.block0.conv0"] * 64) / 64).astype(np.float32)
    if specials:
        w = floats["group1.block0.conv1"].copy().reshape(-1)
        w[: SPECIAL_BITS.size] = SPECIAL_BITS.view(np.float32)
        floats["group1.block0.conv1"] = w.reshape(floats["group1.block0.conv1"].shape)
    return Model(m.arch, False, floats)


def _golden(name: str) -> tuple[Model, str]:
    return {
        "fp-f32.bwn": (fp_model(), "float32"),
        "fp-f16.bwn": (fp_model(), "float16"),
        "fp-bf16.bwn": (fp_model(), "bfloat16"),
        "fp-specials.bwn": (fp_model(True), "float32"),
    }[name]


def _write(tmp_path: Path, data: bytes, name: str = "m.bwn") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- goldens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN_SHA256))
def test_golden_bytes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwn, "__version__", "golden")
    model, weights = _golden(name)
    data = bwn.write(model, weights=weights, metadata={"purpose": "golden test"})
    path = GOLDEN / name
    check_golden(path, data, GOLDEN_SHA256[name])
    back = bwn.read(path)
    assert round_weights(model, weights).compare(back) == []
    assert back.weights == weights


@pytest.mark.parametrize("name", sorted(GOLDEN_SHA256))
def test_a_reader_written_from_the_spec_alone_agrees(name: str) -> None:
    ours = bwn.read(GOLDEN / name)
    theirs = spec_read((GOLDEN / name).read_bytes())
    assert set(theirs) == set(ours.floats)
    for k, v in theirs.items():
        assert v.dtype == ours.floats[k].dtype and v.tobytes() == ours.floats[k].tobytes(), k


def test_goldens_exercise_every_part_of_section_13() -> None:
    seen: set[str] = set()
    for name in GOLDEN_SHA256:
        c = box.Container.open(GOLDEN / name)
        for e in c.entries:
            seen.add(f"{e.encoding}:{e.dtype}")
            if e.encoding != "planes":
                continue
            job, _ = planes.parse(c.payload(e), e.shape, e.dtype, e.name)
            span = int(c.payload(e)[6:8].view("<u2")[0]) + 1
            seen |= {"lanes>1"} if job.lanes > 1 else {"lanes=1"}
            seen |= {f"ctx:{e.dtype}"} if job.ctx.size else {f"uniform-only:{e.dtype}"}
            seen |= {"absent A"} if job.a_values.size < span else set()
            seen |= {"absent B"} if np.any(job.b_tables == rans.ABSENT) else set()
    assert {
        "planes:f32",
        "planes:f16",
        "planes:bf16",
        "raw:bf16",
        "f32-rans:f32",
        "lanes>1",
        "lanes=1",
        "ctx:f32",
        "ctx:f16",
        "ctx:bf16",
        "uniform-only:f32",
        "absent A",
        "absent B",
    } <= seen, seen


def test_specials_survive_bit_for_bit() -> None:
    back = bwn.read(GOLDEN / "fp-specials.bwn").floats["group1.block0.conv1"].reshape(-1)
    assert np.array_equal(back[: SPECIAL_BITS.size].view(np.uint32), SPECIAL_BITS)


# --- the codec --------------------------------------------------------------------------------------------


def _round_trip(bits: np.ndarray, dtype: str) -> np.ndarray:
    buf = planes.encode(bits, dtype)
    assert buf is not None
    job, finish = planes.parse(np.frombuffer(buf, np.uint8), bits.shape, dtype, "t")
    planes_decode.decode_jobs([job])
    return finish()


@pytest.mark.parametrize("n", [1, 7, 2048, 2049, 6145, 20_000])
def test_planes_is_bit_exact_on_every_pattern(n: int) -> None:
    rng = np.random.default_rng(n)
    gauss = rng.normal(0, 0.05, n).astype(np.float32).view(np.uint32)
    every = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    for bits in (gauss, every, np.concatenate([SPECIAL_BITS, gauss])[: max(n, SPECIAL_BITS.size)]):
        assert np.array_equal(_round_trip(bits, "f32"), bits)
        with np.errstate(over="ignore"):  # overflow to infinity is float16's rounding
            h = bits.view(np.float32).astype(np.float16).view(np.uint16)
        assert np.array_equal(_round_trip(h, "f16"), h)
        b = to_bfloat16_bits(bits.view(np.float32))
        if planes.encode(b, "bf16") is not None:
            assert np.array_equal(_round_trip(b, "bf16"), b)


def test_every_float_encoding_round_trips_specials(tmp_path: Path) -> None:
    m = fp_model(True)
    for w in ("float32", "float16", "bfloat16"):
        p = _write(tmp_path, bwn.write(m, weights=w), f"{w}.bwn")
        assert round_weights(m, w).compare(bwn.read(p)) == []
    arr = np.concatenate(
        [SPECIAL_BITS, np.random.default_rng(0).normal(0, 1, 5000).astype(np.float32).view(np.uint32)]
    ).view(np.float32)
    pend = codec.parse_f32(np.frombuffer(codec.encode_f32(arr), np.uint8), arr.shape, "t")
    rans.decode_jobs(pend.jobs)
    assert np.array_equal(pend.finish().view(np.uint32), arr.view(np.uint32))  # f32-rans
    assert np.array_equal(_round_trip(arr.view(np.uint32), "f32"), arr.view(np.uint32))  # planes


def test_many_tensors_decode_together_in_batches() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 2**32, 700, dtype=np.uint64).astype(np.uint32) for _ in range(140)]  # ~512 A each
    jobs, fins = [], []
    for a in arrays:
        job, fin = planes.parse(np.frombuffer(planes.encode(a, "f32"), np.uint8), a.shape, "f32", "t")
        jobs.append(job)
        fins.append(fin)
    planes_decode.decode_jobs(jobs)  # 140 x ~500 A ids > 2^16: split into batches
    assert all(np.array_equal(f(), a) for f, a in zip(fins, arrays, strict=True))


def test_half_precision_rounding_is_within_half_an_ulp() -> None:
    x = np.random.default_rng(2).normal(0, 0.05, 200_000).astype(np.float32)
    x = x[np.abs(x) > 2.0**-14]  # float16's normal range
    h = x.astype(np.float16).astype(np.float32)
    ulp16 = np.spacing(np.abs(h).astype(np.float16)).astype(np.float32)
    assert np.all(np.abs(h - x) <= ulp16 / 2)
    b = from_bfloat16_bits(to_bfloat16_bits(x))
    ulpb = 2.0 ** (np.floor(np.log2(np.abs(b))) - 7)
    assert np.all(np.abs(b - x) <= ulpb / 2)
    assert np.isnan(from_bfloat16_bits(to_bfloat16_bits(np.array([0x7F800001], np.uint32).view(np.float32))))[0]


def test_bf16_count_limit_falls_back_to_raw() -> None:
    assert planes.encode(np.zeros(10_000, np.uint16), "bf16") is None
    assert planes.encode(np.zeros(0, np.uint32), "f32") is None


# --- reader errors ----------------------------------------------------------------------------------------


def _planes_payload(n: int = 5000, dtype: str = "f32") -> np.ndarray:
    bits = np.random.default_rng(3).normal(0, 1, n).astype(np.float32)
    bits = bits.view(np.uint32) if dtype == "f32" else bits.astype(np.float16).view(np.uint16)
    return np.frombuffer(planes.encode(bits, dtype), np.uint8).copy()


def _edit(buf: np.ndarray, offset: int, value: int, fmt: str) -> np.ndarray:
    out = buf.copy()
    out[offset : offset + np.dtype(fmt).itemsize] = np.frombuffer(np.array([value], fmt).tobytes(), np.uint8)
    return out


def _ctx_at(buf: np.ndarray) -> int:
    return 9 + int(buf[6:8].view("<u2")[0])


@pytest.mark.parametrize(
    "mutate,shape,dtype,message",
    [
        (lambda b: b[:5], (5000,), "f32", "shorter than its 8-byte head"),
        (lambda b: _edit(b, 0, 0, "<u4"), (5000,), "f32", "field 'lanes'"),
        (lambda b: _edit(b, 0, 1, "<u4"), (5000,), "f32", "field 'lanes'"),
        (lambda b: _edit(b, 6, 600, "<u2"), (5000,), "f32", "field 'a_span'"),
        (lambda b: _edit(b, 4, 60, "<u2"), (5000,), "f16", "field 'a_span'"),
        (lambda b: b[:12], (5000,), "f32", "ends inside the A table"),
        (
            lambda b: np.concatenate([b[:8], np.full(_ctx_at(b) - 8, 255, np.uint8), b[_ctx_at(b) :]]),
            (5000,),
            "f32",
            "field 'a_table'",
        ),
        (lambda b: _edit(b, _ctx_at(b), 300, "<u2"), (5000,), "f32", "field 'n_ctx'"),
        (lambda b: _edit(b, _ctx_at(b), 40, "<u2"), (5000,), "f16", "field 'n_ctx'"),
        (lambda b: b[:-1], (5000,), "f32", "field 'length'"),
        (lambda b: b, (9000,), "f32", "field 'length'"),
        (lambda b: b, (0,), "f32", "at least one value"),
        (lambda b: b, (5000,), "f64", "can't hold dtype"),
    ],
)
def test_planes_header_errors_name_the_field(mutate, shape, dtype, message: str) -> None:
    buf = mutate(_planes_payload(5000, "f16" if dtype == "f16" else "f32"))
    with pytest.raises(FormatError, match=message):
        planes.parse(buf, shape, dtype, "t")


def test_planes_context_and_table_errors() -> None:
    buf = _planes_payload(5000, "f16")
    p = _ctx_at(buf)
    n_ctx = int(buf[p : p + 2].view("<u2")[0])
    assert n_ctx >= 2, "the f16 payload should carry B tables"
    swapped = buf.copy()
    swapped[p + 2], swapped[p + 3] = buf[p + 3], buf[p + 2]
    with pytest.raises(FormatError, match="field 'ctx'"):
        planes.parse(swapped, (5000,), "f16", "t")
    empty = buf.copy()
    empty[p + 2 + n_ctx : p + 2 + n_ctx + 4] = 255
    with pytest.raises(FormatError, match="field 'b_tables'"):
        planes.parse(empty, (5000,), "f16", "t")
    low_end = p + 2 + n_ctx * 5 + 5000
    with pytest.raises(FormatError, match="field 'states'"):
        planes.parse(_edit(buf, low_end, 5, "<u4"), (5000,), "f16", "t")


def test_bf16_count_limit_is_checked_before_allocation() -> None:
    with pytest.raises(FormatError, match="more than 32 per byte"):
        planes.parse(np.zeros(100, np.uint8), (3201,), "bf16", "t")


@pytest.mark.parametrize("cut", ["drop", "extra", "flip"])
def test_a_damaged_planes_stream_is_refused(cut: str) -> None:
    buf = _planes_payload(5000)
    if cut == "drop":
        buf = buf[:-2]
    elif cut == "extra":
        buf = np.concatenate([buf, np.zeros(2, np.uint8)])
    else:
        buf = buf.copy()
        buf[-40:] ^= 0xFF
    job, _ = planes.parse(buf, (5000,), "f32", "t")
    with pytest.raises(FormatError, match="field 'words'|field 'stream'"):
        planes_decode.decode_jobs([job])


def _file(tmp_path: Path, edit) -> Path:
    return _write(tmp_path, relay((GOLDEN / "fp-bf16.bwn").read_bytes(), edit))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d["metadata"].update(weights="float8"), "field 'metadata.weights'"),
        (lambda d: d["metadata"].update(weights="float16"), "field 'dtype'"),
        (lambda d: d["metadata"].pop("weights"), "field 'dtype'"),
        (lambda d: d["metadata"].update(binarized=True), "binarised"),
    ],
)
def test_reader_checks_the_weights_declaration(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        bwn.read(_file(tmp_path, edit))


def test_a_bf16_tensor_that_is_not_a_conv_is_refused(tmp_path: Path) -> None:
    data = (GOLDEN / "fp-bf16.bwn").read_bytes()
    doc = json.loads(data[32 : 32 + int.from_bytes(data[16:24], "little")])
    payloads = [data[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    k = next(i for i, e in enumerate(doc["tensors"]) if e["name"] == "bn_last.running_var")
    doc["tensors"][k]["dtype"] = "bf16"
    payloads[k] = to_bfloat16_bits(np.frombuffer(payloads[k], "<f4")).astype("<u2").tobytes()
    with pytest.raises(FormatError, match="'bn_last.running_var' is bf16 but"):
        bwn.read(_write(tmp_path, lay_out(doc, payloads)))


def test_planes_tensor_with_a_wrong_dtype_is_refused(tmp_path: Path) -> None:
    def edit(d: dict) -> None:
        e = next(e for e in d["tensors"] if e["encoding"] == "planes")
        e["dtype"] = "f64"

    with pytest.raises(FormatError, match="can't hold dtype 'f64'"):
        bwn.read(_file(tmp_path, edit))


# --- the verbs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from binexport.data.synth import make_arch, write_training_run

    return write_training_run(tmp_path_factory.mktemp("fp") / "run", make_arch(8, 0.5, 10), binarize=False)


def test_pack_bwn_of_a_full_precision_checkpoint(fp_checkpoint: Path, tmp_path: Path) -> None:
    import binexport

    r = binexport.pack(fp_checkpoint, tmp_path / "m.bwn", format="bwn")
    assert r.weights == "float32" and not r.binarized_anyway and r.output_bytes < r.float32_bytes
    src = binexport.load(fp_checkpoint)
    back = binexport.load(tmp_path / "m.bwn")
    assert src.compare(back) == [] and not back.binarized and back.weights == "float32"
    for w in ("float16", "bfloat16"):
        r = binexport.pack(fp_checkpoint, tmp_path / f"{w}.bwn", format="bwn", weights=w)
        assert r.weights == w
        back = binexport.load(tmp_path / f"{w}.bwn")
        assert back.weights == w and round_weights(src, w).compare(back) == []
        assert all(v.dtype != np.float16 for v in back.floats.values())


def test_the_packed_layout_still_refuses_a_full_precision_model(fp_checkpoint: Path, tmp_path: Path) -> None:
    import binexport

    with pytest.raises(InputError, match="published packed layout holds 1-bit block convs only"):
        binexport.pack(fp_checkpoint, tmp_path / "m.packed.pth.tar")
    with pytest.raises(InputError, match="--weights is a .bwn/safetensors option"):
        binexport.pack(fp_checkpoint, tmp_path / "m.packed.pth.tar", binarize_anyway=True, weights="float16")


def test_half_weights_are_refused_for_a_1_bit_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="for full-precision models"):
        bwn.write(tiny_model(binarized=True), weights="float16")
    with pytest.raises(InputError, match="unknown .bwn weights"):
        bwn.write(tiny_model(binarized=False), weights="int4")


def test_1_bit_models_never_use_planes() -> None:
    data = bwn.write(tiny_model(depth=8, width=1, binarized=True))
    doc = json.loads(data[32 : 32 + int.from_bytes(data[16:24], "little")])
    assert "planes" not in {e["encoding"] for e in doc["tensors"]}


def test_inspect_lists_every_full_precision_output(fp_checkpoint: Path) -> None:
    import binexport

    sizes = binexport.inspect(fp_checkpoint).output_sizes
    assert str(sizes["packed"]).startswith("n/a: the published packed layout")
    assert sizes["bwn bfloat16"] < sizes["bwn float16"] < sizes["bwn"] < sizes["onnx"]
    assert sizes["onnx int8"] < sizes["onnx float16"] < sizes["onnx"]


def test_cli_pack_weights_and_verify_labels(fp_checkpoint: Path, tmp_path: Path) -> None:
    import binexport
    from binexport.data.synth import write_cifar_testset

    wide = {"COLUMNS": "200"}
    outs = []
    for w in ("float32", "float16", "bfloat16"):
        out = tmp_path / f"{w}.bwn"
        r = invoke("pack", fp_checkpoint, "--format", "bwn", "--weights", w, "-o", out, "--json", env=wide)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["weights"] == w
        outs.append(out)
    r = invoke("inspect", outs[2], env=wide)
    assert r.exit_code == 0 and "rounded to bfloat16 (lossy)" in r.output, r.output
    rng = np.random.default_rng(0)
    write_cifar_testset(
        tmp_path / "data",
        rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, 40),
        dataset="CIFAR10",
    )
    rep = binexport.verify(outs, dataset="CIFAR10", data_root=tmp_path / "data", reference=fp_checkpoint, device="cpu")
    assert [a.weights for a in rep.artifacts] == ["float32", "float16", "bfloat16"]
    assert rep.failures == [], rep.failures


@pytest.mark.slow  # a WRN-20 demo (~15 s); pack --weights and verify of float files are covered fast above
def test_demo_full_precision_branch(tmp_path: Path) -> None:
    from binexport.verbs.demo import run_demo

    r = run_demo(tmp_path / "demo", width=0.25, n_images=8, full_precision=True)
    assert list(r.steps) == ["inspect", "pack-bwn", "pack-bwn-float16", "to-onnx", "verify"]
    assert [a.weights for a in r.steps["verify"].artifacts] == ["float32", "float16", "float32"]
    assert r.steps["verify"].failures == []
