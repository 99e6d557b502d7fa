"""The .bwn format: golden bytes, exact round trips, the codecs on odd shapes, a strict reader, CLI, no torch."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from bwn_spec_reader import read as spec_read
from bwn_spec_reader import relay
from click.testing import CliRunner
from helpers import REAL_PACKED, check_golden, tiny_model

import binexport as api
from binexport.cli import main
from binexport.errors import FormatError, InputError
from binexport.formats import bwn
from binexport.formats.bwn import codec, rans
from binexport.formats.bwn import container as box

GOLDEN = Path(__file__).parent / "golden"
#: sha256 of each golden file. Changing the format is deliberate: document it in docs/FORMAT.md (bump
#: box.VERSION if an older reader could misread the new bytes, section 11), run `BWN_REGENERATE_GOLDEN=1 pytest tests/test_bwn.py -k golden`, paste the printed hashes.
GOLDEN_SHA256 = {
    "tiny-best.bwn": "3d2d1050c4be638a090e4bf6e1691107c628c70f6c9841966611b2468b0832ee",
    "tiny-rans.bwn": "d5085cc2c1594e3213e71ddd82441662b8e197a4d3a36cec76dbe88a8772bac9",
    "tiny-rans-ref.bwn": "22d23a37ea8863079ed87553396d7841568dce8d26d4b2cdde517c8dfa078375",
}


def golden_model():
    """WRN-8-0.25 (4/8/16 channels: in % 8 != 0), 10 classes, fixed seed."""
    return tiny_model(depth=8, width=0.25, num_classes=10, seed=0, binarized=True)


def _write(tmp_path: Path, data: bytes, name: str = "m.bwn") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- golden bytes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN_SHA256))
def test_golden_bytes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwn, "__version__", "golden")
    encoding = name[len("tiny-") : -len(".bwn")]
    data = bwn.write(golden_model(), encoding=encoding, metadata={"purpose": "golden test"})
    path = GOLDEN / name
    check_golden(path, data, GOLDEN_SHA256[name])
    back = bwn.read(path)
    assert golden_model().compare(back) == []
    assert back.metadata["user.purpose"] == "golden test"


@pytest.mark.parametrize("name", sorted(GOLDEN_SHA256))
def test_a_reader_written_from_the_spec_alone_agrees(name: str) -> None:
    ours = bwn.read(GOLDEN / name)
    theirs = spec_read((GOLDEN / name).read_bytes())
    assert set(theirs) == set(ours.floats) | set(ours.binary)
    for k, v in theirs.items():
        mine = ours.binary[k].signs if k in ours.binary else ours.floats[k]
        assert v.dtype == mine.dtype and v.tobytes() == mine.tobytes(), k


def test_golden_files_use_every_encoding() -> None:
    used = set()
    for name in GOLDEN_SHA256:
        used |= {e.encoding for e in box.Container.open(GOLDEN / name).entries}
    assert used == set(box.ENCODINGS) - {"planes"}  # full-precision encodings: tests/test_bwn_float.py
    assert (GOLDEN / "tiny-branches.bwn").is_file()  # every branch of every encoding: tests/test_bwn_spec.py


# --- whole-model round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "packed", "rans", "rans-ref"])
@pytest.mark.parametrize(
    "depth,width,classes,binarized",
    [
        (8, 0.0625, 10, True),  # widths 1, 2, 4: in_channels = 1
        (8, 0.75, 7, True),  # widths 12, 24, 48: in % 8 == 4
        (14, 0.5, 100, True),
        (8, 0.5, 10, False),  # full precision: every tensor float
    ],
)
def test_round_trip_exact(
    tmp_path: Path, encoding: str | None, depth: int, width: float, classes: int, binarized: bool
) -> None:
    model = tiny_model(depth, width, classes, seed=depth, binarized=binarized)
    model.zero_weights = 3
    back = bwn.read(_write(tmp_path, bwn.write(model, encoding=encoding)))
    assert model.compare(back) == []
    assert (back.arch, back.binarized, back.zero_weights) == (model.arch, binarized, 3)
    assert back.floats["bn_last.num_batches_tracked"].dtype == np.int64
    assert back.source.format == "bwn" and back.source.breakdown["binarized weights"] >= 0


def test_packed_encoding_is_memory_mapped_and_zero_copy(tmp_path: Path) -> None:
    path = _write(tmp_path, bwn.write(tiny_model(8, 0.5), encoding="packed"))
    model = bwn.read(path)
    arr = model.floats["conv_last"]
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    assert type(base).__name__ == "mmap", f"conv_last is not a view of the file mapping ({type(base)})"
    assert {e.encoding for e in box.Container.open(path).entries} == {"raw", "packed"}
    assert all(e.offset % 64 == 0 for e in box.Container.open(path).entries)
    arr += 0  # writable (copy-on-write), so downstream code can hand it to torch without warnings


def test_full_precision_float64_and_float16_tensors_round_trip(tmp_path: Path) -> None:
    model = tiny_model(8, 0.5, binarized=False)
    model.floats["conv_last"] = model.floats["conv_last"].astype(np.float64)
    model.floats["bn_last.weight"] = model.floats["bn_last.weight"].astype(np.float16)
    back = bwn.read(_write(tmp_path, bwn.write(model)))
    assert model.compare(back) == []


def test_user_metadata_survives_and_bad_options_are_refused(tmp_path: Path) -> None:
    model = tiny_model()
    back = bwn.read(_write(tmp_path, bwn.write(model, metadata={"dataset": "CIFAR-10", "ü": "ß"})))
    again = bwn.read(_write(tmp_path, bwn.write(back), "again.bwn"))
    assert again.metadata["user.dataset"] == "CIFAR-10" and again.metadata["user.ü"] == "ß"
    with pytest.raises(InputError, match="valid: best, packed, rans, rans-ref"):
        bwn.write(model, encoding="zip")
    with pytest.raises(InputError, match="strings to strings"):
        bwn.write(model, metadata={"n": 1})  # type: ignore[dict-item]


# --- the codecs on odd shapes -----------------------------------------------------------------------------

SHAPES = [(1, 1, 3, 3), (5, 1, 3, 3), (1, 7, 3, 3), (13, 11, 3, 3), (6, 4, 1, 1), (3, 5, 1, 3), (40, 24, 3, 3)]


def _decode_kernels(payload: bytes, shape: tuple[int, ...], refs: bool) -> np.ndarray:
    pend = codec.parse_kernels(np.frombuffer(payload, np.uint8), shape, refs, "t")
    rans.decode_jobs(pend.jobs)
    return pend.finish()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "plus", "minus", "skewed"])
def test_bit_codecs_round_trip_odd_shapes(shape: tuple[int, ...], kind: str) -> None:
    rng = np.random.default_rng(sum(shape))
    signs = {
        "random": rng.random(shape) < 0.5,
        "plus": np.ones(shape, bool),
        "minus": np.zeros(shape, bool),
        "skewed": rng.random(shape) < 0.1,
    }[kind]
    packed = codec.encode_packed(signs)
    assert len(packed) == (signs.size + 7) // 8
    assert np.array_equal(codec.decode_packed(np.frombuffer(packed, np.uint8), shape, "t"), signs)
    for refs in (False, True):
        payload = codec.encode_kernels(signs, refs)
        if payload is None:  # all-constant tensors may compress past the 256-weights-per-byte limit
            assert signs.size > codec.MAX_WEIGHTS_PER_BYTE * 8 or (refs and max(shape[:2]) < 2)
            continue
        assert np.array_equal(_decode_kernels(payload, shape, refs), signs)


def test_bit_codecs_on_real_layers(real_packed: Path) -> None:
    model = api.load(real_packed)
    for name in ("group0.block0.conv0", "group1.block0.conv0"):
        signs = model.binary[name].signs
        plain, ref = codec.encode_kernels(signs, False), codec.encode_kernels(signs, True)
        assert len(ref) < len(plain) < len(codec.encode_packed(signs))
        assert np.array_equal(_decode_kernels(ref, signs.shape, True), signs)
        assert np.array_equal(_decode_kernels(plain, signs.shape, False), signs)


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45, -3e38], np.float32),
        np.frombuffer(np.random.default_rng(1).bytes(4 * 999), np.float32),  # NaN payloads included
        np.random.default_rng(2).normal(0, 0.05, (7, 11)).astype(np.float32),
        np.full(5000, 0.5, np.float32),
    ],
)
def test_f32_codec_is_bit_exact(values: np.ndarray) -> None:
    pend = codec.parse_f32(np.frombuffer(codec.encode_f32(values), np.uint8), values.shape, "t")
    rans.decode_jobs(pend.jobs)
    assert pend.finish().tobytes() == values.tobytes()


@pytest.mark.parametrize(
    "parents,flips,message",
    [
        ([1, 2, 0, -1, -1, -1], [0] * 6, "cycle"),
        ([-1, 1, -1, -1, -1, -1], [0] * 6, "its own parent"),
        ([-1, -1, -1, -1, -1, -1], [0, 1, 0, 0, 0, 0], "flip bit"),
        ([-1, 6, -1, -1, -1, -1], [0] * 6, "beyond the 6 groups"),
    ],
)
def test_parent_table_is_checked(parents: list[int], flips: list[int], message: str) -> None:
    signs = np.random.default_rng(0).random((6, 6, 3, 3)) < 0.3
    payload = bytearray(codec.encode_kernels(signs, refs=True))
    table = codec._pack_parents(np.array(parents), np.array(flips))
    payload[8 + 512 : 8 + 512 + len(table)] = table
    with pytest.raises(FormatError, match=message):
        codec.parse_kernels(np.frombuffer(bytes(payload), np.uint8), signs.shape, True, "t")


@pytest.mark.parametrize("keep", [0, 2, 0.5, -2])
def test_a_stream_that_runs_dry_or_has_words_left_is_refused(keep: float) -> None:
    signs = np.random.default_rng(3).random((64, 64, 3, 3)) < 0.2  # 4096 kernels: 2 lanes, 2048 rounds
    payload = codec.encode_kernels(signs, refs=False)
    lanes = int(np.frombuffer(payload[4:8], "<u4")[0])
    words = len(payload) - (8 + 512 + 4 * lanes)
    cut = {0: 0, 2: 2, 0.5: words // 4 * 2, -2: words - 2}[keep]
    data = payload[: 8 + 512 + 4 * lanes + cut] + (b"\0\0" * 3 if keep == -2 else b"")
    pend = codec.parse_kernels(np.frombuffer(data, np.uint8), signs.shape, False, "t")
    with pytest.raises(FormatError, match="ends early|unused|initial state"):
        rans.decode_jobs(pend.jobs)


def test_frequency_tables_follow_the_spec() -> None:
    f = rans.frequencies(np.array([0, 16, 255, 254, 32], np.uint8))
    assert f.sum() == rans.TOTAL and f.min() >= 1 and f.size == 4
    assert f[0] > f[1] > f[3] > 0 and abs(f[0] / f[1] - 2) < 0.01  # 16 units = one bit
    assert list(rans.EXP16[:2]) == [2**31, round(2**31 * 2 ** (-1 / 16))]


# --- a strict reader --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file() -> bytes:
    return bwn.write(tiny_model(8, 0.25), encoding="rans-ref")


def test_reader_refuses_a_future_version(tmp_path: Path, small_file: bytes) -> None:
    data = bytearray(small_file)
    data[8:12] = struct.pack("<I", 2)
    data[28:32] = struct.pack(
        "<I", zlib.crc32(data[32 : 32 + struct.unpack_from("<Q", data, 16)[0]], zlib.crc32(data[:28]))
    )
    with pytest.raises(FormatError, match="version 2.*reads version 1 only.*newer binexport"):
        bwn.read(_write(tmp_path, bytes(data)))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d[:20], "shorter than the 32-byte"),
        (lambda d: d + b"\0", "trailing bytes"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: b"\x89BWX" + d[4:], "not a .bwn file"),
        (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "header checksum mismatch"),
        (lambda d: d[:-3] + bytes([d[-3] ^ 4]) + d[-2:], "checksum mismatch in tensor"),
        (lambda d: d[:24] + struct.pack("<I", 48) + d[28:], "alignment is 48"),
        (lambda d: d[:16] + struct.pack("<Q", 2**40) + d[24:], "header_length"),
    ],
)
def test_reader_names_what_is_wrong(tmp_path: Path, small_file: bytes, mutate, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        bwn.read(_write(tmp_path, mutate(small_file)))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d["tensors"][0].__setitem__("offset", 0), "field 'offset'"),
        (lambda d: d["tensors"][1].__setitem__("shape", [160, 640, 1, 1]), "field 'length'|shape"),
        (lambda d: d["tensors"][0].__setitem__("dtype", "f8"), "dtype 'f8' is unknown"),
        (lambda d: d["tensors"][2].__setitem__("encoding", "zstd"), "encoding 'zstd' is unknown"),
        (lambda d: d["tensors"][0].__setitem__("extra", 1), "expected an object with keys"),
        (lambda d: d["tensors"][3].__setitem__("name", d["tensors"][4]["name"]), "appears twice"),
        (lambda d: d["tensors"][0].__setitem__("length", True), "'length' must be an integer"),
        (lambda d: d["tensors"][2].__setitem__("shape", [2**31] * 4), "shape"),
        (lambda d: d["metadata"]["architecture"].__setitem__("num_classes", 11), "field 'metadata.architecture'"),
        (lambda d: d["metadata"].__setitem__("binarized", False), "binarized"),
        (lambda d: d["metadata"].__setitem__("user", {"k": 1}), "metadata.user"),
        (lambda d: d.__setitem__("extra", {}), "keys 'metadata' and 'tensors'"),
    ],
)
def test_reader_checks_the_tensor_table(tmp_path: Path, small_file: bytes, edit, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        bwn.read(_write(tmp_path, relay(small_file, edit)))


@pytest.mark.parametrize(
    "header,message",
    [
        (b'{"metadata":{},"tensors":[],"tensors":[]}', "repeats a key"),
        (b'{"metadata":{"x":NaN},"tensors":[]}', "NaN"),
        (b'{"metadata":{"x":"\xff"},"tensors":[]}', "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b'{"metadata":' + b"[" * 70 + b"]" * 70 + b',"tensors":[]}', "nests deeper"),
        (b'{"metadata":{}, "tensors": [', "not valid JSON"),
    ],
)
def test_reader_refuses_bad_json(tmp_path: Path, header: bytes, message: str) -> None:
    pre = box._PREAMBLE.pack(box.MAGIC, 1, 0, len(header), 64, 0)[:28]
    data = pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header
    with pytest.raises(FormatError, match=message):
        bwn.read(_write(tmp_path, data))


def test_checksums_can_be_skipped_but_structure_is_still_checked(tmp_path: Path, small_file: bytes) -> None:
    c = box.Container.open(_write(tmp_path, small_file))
    raw = next(e for e in c.entries if e.encoding == "raw" and e.dtype == "f32")
    data = bytearray(small_file)
    data[raw.offset] ^= 0x80
    path = _write(tmp_path, bytes(data), "flipped.bwn")
    with pytest.raises(FormatError, match=f"checksum mismatch in tensor.*{raw.name}"):
        bwn.read(path)
    assert (
        bwn.read(path, verify_checksums=False).floats[raw.name].tobytes()
        != bwn.read(_write(tmp_path, small_file, "ok.bwn")).floats[raw.name].tobytes()
    )
    assert "MISMATCH" in str(bwn.describe(path)["tensors"])


def test_a_lying_shape_is_refused_before_allocation(tmp_path: Path, small_file: bytes) -> None:
    def huge(d: dict) -> None:
        e = next(t for t in d["tensors"] if t["encoding"] == "rans-ref")
        e["shape"] = [2**31 - 1, 2**31 - 1, 3, 3]

    with pytest.raises(FormatError, match="weights per byte|not a valid|shape"):
        bwn.read(_write(tmp_path, relay(small_file, huge)))


# --- through the API and the CLI --------------------------------------------------------------------------


def test_cli_pack_then_inspect(make_run, tmp_path: Path) -> None:
    ckpt = make_run(depth=8, width=0.5, num_classes=10)
    out = tmp_path / "model.bwn"
    runner = CliRunner(env={"COLUMNS": "200"})
    r = runner.invoke(main, ["pack", str(ckpt), "-o", str(out), "--format", "bwn", "--meta", "owner=lab"])
    assert r.exit_code == 0, r.output
    assert "checked" in r.output and out.is_file()
    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    for text in (
        "bwn",
        "WRN-8-0.5",
        "1-bit",
        "checksums: header ok;",
        "tensors ok",
        "group2.block0.conv1",
        "owner",
        "encoding",
    ):
        assert text in r.output, text
    r = runner.invoke(main, ["inspect", "--json", str(out)])
    details = json.loads(r.output)["details"]
    assert {t["checksum"] for t in details["tensors"]} == {"ok"}
    assert api.load(out).compare(api.load(ckpt)) == []


def test_cli_errors_are_one_line(tmp_path: Path, make_run) -> None:
    ckpt = make_run(depth=8, width=0.5)
    r = CliRunner().invoke(main, ["pack", str(ckpt), "--format", "bwn", "--encoding", "zip"])
    assert r.exit_code == 2 and "unknown .bwn encoding 'zip'" in r.output
    r = CliRunner().invoke(main, ["pack", str(ckpt), "--format", "bwn", "--meta", "novalue"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    bad = _write(tmp_path, bwn.write(tiny_model())[:-5], "cut.bwn")
    r = CliRunner().invoke(main, ["inspect", str(bad)])
    assert r.exit_code == 2 and "truncated" in r.output and "Traceback" not in r.output


def test_a_bwn_is_valid_input_to_pack(tmp_path: Path) -> None:
    src = _write(tmp_path, bwn.write(tiny_model(8, 0.5)), "in.bwn")
    report = api.pack(src, tmp_path / "again.bwn", format="bwn", encoding="rans-ref")
    assert report.input_format == "bwn" and report.tensors_checked > 0
    assert api.load(tmp_path / "again.bwn").compare(api.load(src)) == []


def test_reading_does_not_import_torch(tmp_path: Path) -> None:
    path = _write(tmp_path, bwn.write(tiny_model(8, 0.5)))
    code = (
        "import sys; from binexport.formats import bwn; m = bwn.read(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'bwn.read'; import binexport as a; m2 = a.load(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'api.load'; assert m.compare(m2) == []; print('clean')"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr


# --- the real checkpoint ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_bwn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not REAL_PACKED.is_file():
        pytest.skip(f"real published checkpoint absent: {REAL_PACKED}")
    out = tmp_path_factory.mktemp("real") / "wrn20-10.bwn"
    api.pack(REAL_PACKED, out, format="bwn")
    return out


def test_real_checkpoint_meets_the_size_target_and_every_bit_survives(real_bwn: Path) -> None:
    size = real_bwn.stat().st_size
    assert size <= 2_700_000, f"{size:,} B is over the 2.7 MB target"
    assert size < REAL_PACKED.stat().st_size * 0.7
    assert api.load(REAL_PACKED).compare(bwn.read(real_bwn)) == []
    meta = box.Container.open(real_bwn).metadata
    assert meta["source"]["sha256"] == "966514661f4964c166f7aff3e2b2f141260c0df8c5712b3134bd53ea884b8f28"
    assert meta["architecture"]["name"] == "WRN-20-10" and meta["normalization"]["mean"][0] == 125.3 / 255


def test_real_checkpoint_packed_encoding_is_the_mappable_form(real_bwn: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.bwn"
    api.pack(real_bwn, out, format="bwn", encoding="packed")
    assert {e.encoding for e in box.Container.open(out).entries} == {"raw", "packed"}
    assert 3_340_800 < out.stat().st_size < 3_700_000
