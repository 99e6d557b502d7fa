"""The model rules of docs/FORMAT.md sections 4, 4.1, 7, 10 and 13.1 that the 2026-12 revision made explicit.

Each rule is one crafted file and the verdict the page gives; binexport (``bwn.read``, a model reader, and
``bwn.read_tensors``, a container reader) and the reader written from the page alone
(``tests/bwn_spec_reader.py``: ``read`` for the container, ``model`` for section 4) must both reach it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import bwn_spec_reader as spec
from support.bwn_spec_reader import lay_out, relay, wrn_tensors
from support.models import tiny_model
from support.paths import GOLDEN

from binexport.data.synth import random_state
from binexport.errors import FormatError, InputError
from binexport.formats import bwn
from binexport.formats.bwn import container as box
from binexport.model import Arch, Model, binarize

Edit = Callable[[dict], None]


def _port() -> bytes:
    return bwn.write(tiny_model(8, 0.25), encoding="packed")


def _variant(family: str = "mcdonnell-matlab") -> bytes:
    arch = Arch.of(8, (4, 8, 16), 10, family)
    return bwn.write(binarize(Model(arch, False, random_state(arch, 0))), encoding="packed")


def _meta(**kv: object) -> Edit:
    def edit(doc: dict) -> None:
        for k, v in kv.items():
            if v is _DEL:
                doc["metadata"].pop(k, None)
            else:
                doc["metadata"][k] = v

    return edit


def _arch(**kv: object) -> Edit:
    def edit(doc: dict) -> None:
        for k, v in kv.items():
            if v is _DEL:
                doc["metadata"]["architecture"].pop(k)
            else:
                doc["metadata"]["architecture"][k] = v

    return edit


def _variant_field(key: str, value: object) -> Edit:
    return lambda doc: doc["metadata"]["variant"].__setitem__(key, value)


def _dtype(name: str, dtype: str) -> Edit:
    def edit(doc: dict) -> None:
        next(e for e in doc["tensors"] if e["name"] == name)["dtype"] = dtype

    return edit


_DEL = object()
BINARY_WEIGHTS = sum(int(np.prod(s)) for n, s in wrn_tensors(8, [4, 8, 16], 10) if ".block" in n and "conv" in n)

# (id, base file, header edit, new flags or None, accepted?, binexport's message if refused)
CASES = [
    ("port as written", _port, None, None, True, ""),
    ("no 'model': a tensor container", _port, _meta(model=_DEL), None, False, "not a model file"),
    ("another 'model'", _port, _meta(model="ResNet"), None, False, "metadata 'model'"),
    ("architecture without name and width", _port, _arch(name=_DEL, width=_DEL), None, True, ""),
    ("a wrong name and width are not checked", _port, _arch(name="WRN-99-9", width=7), None, True, ""),
    ("widths that don't match the tensors", _port, _arch(widths=[4, 8, 32]), None, False, "widths"),
    ("depth as a float", _port, _arch(depth=8.0), None, False, "integer depth"),
    ("no binarized", _port, _meta(binarized=_DEL), None, False, "binarized"),
    ("no zero_weights", _port, _meta(zero_weights=_DEL), None, False, "zero_weights"),
    ("zero_weights at its bound", _port, _meta(zero_weights=BINARY_WEIGHTS), None, True, ""),
    ("zero_weights over its bound", _port, _meta(zero_weights=BINARY_WEIGHTS + 1), None, False, "zero_weights"),
    ("no user", _port, _meta(user=_DEL), None, True, ""),
    ("user with a number", _port, _meta(user={"a": 1}), None, False, "'user'"),
    (
        "ignored keys of any type",
        _port,
        _meta(normalization=5, source=[], binary_scale=None, binexport_version={}),
        None,
        True,
        "",
    ),
    ("a counter as f64", _port, _dtype("bn.num_batches_tracked", "f64"), None, False, "expected one of i64, i32"),
    ("a BN statistic as i32", _port, _dtype("bn.running_var", "i32"), None, False, "expected one of f16"),
    ("variant as written", _variant, None, None, True, ""),
    ("keras variant as written", lambda: _variant("mcdonnell-keras"), None, None, True, ""),
    ("variant without flags bit 0", _variant, None, 0, False, "flags bit 0 is not set"),
    ("variant null without flags bit 0", _port, _meta(variant=None), None, False, "flags bit 0 is not set"),
    ("variant {} without flags bit 0", _port, _meta(variant={}), None, False, "flags bit 0 is not set"),
    ("variant null with flags bit 0", _port, _meta(variant=None), 1, False, "names no known family"),
    ("flags bit 0 without variant", _port, None, 1, False, "names no known family"),
    ("variant with binarized false", _variant, _meta(binarized=False), None, False, "binarized"),
    ("bn_eps 0 as an integer", _variant, _variant_field("bn_eps", 0), None, True, ""),
    ("bn_eps that differs", _variant, _variant_field("bn_eps", 1e-5), None, False, "expected exactly"),
    ("input_bn 1 for true", _variant, _variant_field("input_bn", 1), None, False, "expected exactly"),
    ("keras bn_eps 0.00001", lambda: _variant("mcdonnell-keras"), _variant_field("bn_eps", 0.00001), None, True, ""),
    ("variant normalization is not checked", _variant, _meta(normalization={"input": "pixel / 255"}), None, True, ""),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_model_rules_agree(tmp_path: Path, case: tuple) -> None:
    _, base, edit, flags, accepted, message = case
    data = relay(base(), edit, flags)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    spec.read(data)  # every case is a valid container
    bwn.read_tensors(path)
    if accepted:
        bwn.read(path)
        spec.model(data)
    else:
        with pytest.raises(FormatError, match=message):
            bwn.read(path)
        with pytest.raises(AssertionError):
            spec.model(data)


def _retext(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with ``old`` replaced by ``new`` (same length) in the header, its checksum recomputed."""
    assert len(old) == len(new)
    h = struct.unpack_from("<Q", data, 16)[0]
    header = data[32 : 32 + h]
    assert header.count(old) == 1
    header = header.replace(old, new)
    pre = data[:28]
    return pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header + data[32 + h :]


@pytest.mark.parametrize(
    "family,old,new",
    [
        ("mcdonnell-keras", b'"bn_eps":1e-05', b'"bn_eps":1E-05'),
        ("mcdonnell-keras", b'"bn_eps":1e-05', b'"bn_eps":10e-6'),
        ("mcdonnell-matlab", b'"bn_eps":0.0', b'"bn_eps":0e0'),
        ("mcdonnell-matlab", b'"bn_eps":0.0', b'"bn_eps":-0.'),  # invalid JSON: refused as such
    ],
)
def test_bn_eps_compares_as_a_number(tmp_path: Path, family: str, old: bytes, new: bytes) -> None:
    data = _retext(_variant(family), old, new)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    if new.endswith(b"."):
        with pytest.raises(FormatError, match="not valid JSON"):
            bwn.read(path)
        with pytest.raises(ValueError):
            spec.model(data)
        return
    assert bwn.read(path).arch.family == family
    assert spec.model(data)["family"] == family


def test_variant_one_bit_conv0_wins_over_section_4(tmp_path: Path) -> None:
    """Section 4.1 makes conv0/conv_last b1 in a variant; the same b1 conv0 in the port is refused."""
    variant = _variant()
    doc = json.loads(variant[32 : 32 + struct.unpack_from("<Q", variant, 16)[0]])
    assert {e["name"]: e["dtype"] for e in doc["tensors"]}["conv0"] == "b1"
    port = tiny_model(8, 0.25)
    signs = np.asarray(port.floats["conv0"]) >= 0
    payload = np.packbits(signs.ravel()).tobytes()
    base = _port()
    h = struct.unpack_from("<Q", base, 16)[0]
    doc = json.loads(base[32 : 32 + h])
    payloads = [base[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    i = next(k for k, e in enumerate(doc["tensors"]) if e["name"] == "conv0")
    doc["tensors"][i].update(dtype="b1", encoding="packed")
    payloads[i] = payload
    data = lay_out(doc, payloads)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="may be 1-bit"):
        bwn.read(path)
    with pytest.raises(AssertionError):
        spec.model(data)


def _no_block_file(depth: int, widths: list[int]) -> bytes:
    """A model header for ``depth``/``widths`` over exactly section 4's tensors, raw, all zero."""
    tensors, payloads = [], []
    for name, shape in wrn_tensors(depth, widths, 10):
        counter = name.endswith("num_batches_tracked")
        dtype = "i64" if counter else "f32"
        tensors.append({"name": name, "dtype": dtype, "shape": shape, "encoding": "raw"})
        payloads.append(bytes((8 if counter else 4) * int(np.prod(shape))))
    meta = {
        "model": "WRN_McDonnell",
        "architecture": {"depth": depth, "widths": widths, "num_classes": 10},
        "binarized": False,
        "zero_weights": 0,
    }
    return lay_out({"metadata": meta, "tensors": tensors}, payloads)


@pytest.mark.parametrize("depth,widths", [(2, [16, 32, 64]), (8, [0, 0, 0]), (14, [4, 8, 16])])
def test_geometry_limits(tmp_path: Path, depth: int, widths: list[int]) -> None:
    """depth 6n+2 with n >= 1 and w0 >= 1; both hold only for the last, which reads."""
    data = _no_block_file(depth, widths)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    spec.read(data)
    if depth == 14:
        assert bwn.read(path).arch.widths == (4, 8, 16)
        spec.model(data)
        return
    with pytest.raises(FormatError):
        bwn.read(path)
    with pytest.raises(AssertionError):
        spec.model(data)


def test_tiny_branches_reads_as_tensors_but_is_no_model(tmp_path: Path) -> None:
    data = (GOLDEN / "tiny-branches.bwn").read_bytes()
    assert len(bwn.read_tensors(GOLDEN / "tiny-branches.bwn")) == len(spec.read(data)) == 15
    with pytest.raises(FormatError, match="not a model file"):
        bwn.read(GOLDEN / "tiny-branches.bwn")
    with pytest.raises(AssertionError, match="not a model file"):
        spec.model(data)


def test_a_container_holds_bf16_anywhere_and_weights_means_nothing(tmp_path: Path) -> None:
    bits = np.arange(6, dtype=np.uint16)
    data = lay_out(
        {
            "metadata": {"weights": "nonsense"},
            "tensors": [{"name": "x", "dtype": "bf16", "shape": [6], "encoding": "raw"}],
        },
        [bits.tobytes()],
    )
    path = tmp_path / "c.bwn"
    path.write_bytes(data)
    assert bwn.read_tensors(path)["x"].tolist() == bits.tolist()
    assert spec.read(data)["x"].view(np.uint32).tolist() == (bits.astype(np.uint32) << 16).tolist()


def test_weights_float32_with_f16_convs_reads_them_as_stored(tmp_path: Path) -> None:
    """Older files: under 'float32' (or no 'weights') conv tensors may be f16, returned as float16."""
    m = tiny_model(8, 0.5, binarized=False)
    floats = {k: (v.astype(np.float16) if k.endswith("conv1") else v) for k, v in m.floats.items()}
    path = tmp_path / "m.bwn"
    path.write_bytes(bwn.write(Model(m.arch, False, floats)))
    out = bwn.read(path)
    assert out.weights_dtype == "float32" and out.floats["group0.block0.conv1"].dtype == np.float16
    spec.model(path.read_bytes())


@pytest.mark.parametrize("equal", [True, False])
def test_data_crc32_of_raw_and_packed_must_equal_crc32(tmp_path: Path, equal: bool) -> None:
    def edit(doc: dict) -> None:
        for e in doc["tensors"]:
            e["data_crc32"] = e["crc32"] if equal else (e["crc32"] ^ 1)

    data = relay(_port(), edit)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    if equal:
        bwn.read(path)
        spec.read(data)
        return
    for verify in (True, False):  # a header rule: refused without decoding or checking a payload
        with pytest.raises(FormatError, match="differs from crc32"):
            bwn.read_tensors(path, verify_checksums=verify)
    with pytest.raises(AssertionError, match="data_crc32"):
        spec.read(data)


def test_planes_a_table_ends_may_be_absent(tmp_path: Path) -> None:
    """Section 13.2: unlike f32-rans, a_table's first and last entries may be 255; both readers decode it."""
    from test_bwn_float import fp_model

    base = bwn.write(fp_model(), weights="bfloat16")
    h = struct.unpack_from("<Q", base, 16)[0]
    doc = json.loads(base[32 : 32 + h])
    payloads = [base[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    i = next(k for k, e in enumerate(doc["tensors"]) if e["encoding"] == "planes" and e["dtype"] == "bf16")
    p = payloads[i]
    _, a_first, a_span = struct.unpack_from("<IHH", p, 0)
    assert a_first >= 1
    # one absent entry before the first and after the last: same symbols, same stream
    payloads[i] = (
        p[:4] + struct.pack("<HH", a_first - 1, a_span + 2) + b"\xff" + p[8 : 9 + a_span] + b"\xff" + p[9 + a_span :]
    )
    data = lay_out(doc, payloads)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    name = doc["tensors"][i]["name"]
    want = bwn.read_tensors(tmp_path.joinpath("m.bwn"))[name]
    path.write_bytes(base)
    assert np.array_equal(bwn.read_tensors(path)[name], want)
    assert np.array_equal(spec.read(data)[name], spec.read(base)[name])


@pytest.mark.parametrize("limit", [-1, 1.5, True, float("inf")])
def test_the_limit_cannot_be_switched_off(tmp_path: Path, limit: object) -> None:
    path = tmp_path / "m.bwn"
    path.write_bytes(_port())
    with pytest.raises(InputError, match="max_decoded_bytes"):
        bwn.read(path, max_decoded_bytes=limit)  # type: ignore[arg-type]


def test_decoded_size_counts_half_floats_as_the_float32_returned(tmp_path: Path) -> None:
    path = tmp_path / "m.bwn"
    path.write_bytes(bwn.write(tiny_model(8, 0.5, binarized=False), weights="bfloat16"))
    c = box.Container.open(path)
    returned = sum(a.nbytes for a in bwn.read(path).floats.values())
    assert sum(e.decoded_bytes for e in c.entries) == returned
    assert sum(spec.DECODED[e.dtype] * e.count for e in c.entries) == returned


@pytest.mark.parametrize("extra", [0, 1])
def test_header_length_limit(tmp_path: Path, extra: int) -> None:
    """Section 2: H <= 1 MiB; a header of exactly 1 MiB of nested arrays reads (whitespace pads it)."""
    body = '{"metadata":{"x":[' + ",".join(["[]"] * 300_000) + ']},"tensors":[]}'
    text = (body + " " * (box.MAX_HEADER + extra - len(body))).encode()
    pre = box._PREAMBLE.pack(box.MAGIC, 1, 0, len(text), 64, 0)[:28]
    data = pre + struct.pack("<I", zlib.crc32(text, zlib.crc32(pre))) + text
    path = tmp_path / "c.bwn"
    path.write_bytes(data)
    if extra:
        with pytest.raises(FormatError, match="header_length"):
            bwn.read_tensors(path)
        with pytest.raises(AssertionError):
            spec.read(data)
    else:
        assert bwn.read_tensors(path) == {} and spec.read(data) == {}


def test_the_writer_refuses_a_header_over_the_limit() -> None:
    with pytest.raises(InputError, match="user metadata"):
        bwn.write(tiny_model(8, 0.25), metadata={"big": "x" * box.MAX_HEADER})


def test_the_writer_refuses_dtypes_no_model_reader_takes() -> None:
    m = tiny_model(8, 0.25)
    floats = {**m.floats, "bn.num_batches_tracked": np.array(3.0)}
    with pytest.raises(InputError, match="num_batches_tracked"):
        bwn.write(Model(m.arch, True, floats, m.binary))


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_planes_count_limits(tmp_path: Path, dtype: str) -> None:
    """Section 10.3: 2 * count <= length (f32), count <= length (f16), count <= 32 * length (bf16)."""
    base = (GOLDEN / {"f32": "fp-f32.bwn", "f16": "fp-f16.bwn", "bf16": "fp-bf16.bwn"}[dtype]).read_bytes()
    h = struct.unpack_from("<Q", base, 16)[0]
    doc = json.loads(base[32 : 32 + h])
    entry = next(e for e in doc["tensors"] if e["encoding"] == "planes" and e["dtype"] == dtype)
    most = {"f32": entry["length"] // 2, "f16": entry["length"], "bf16": 32 * entry["length"]}[dtype]

    def edit(d: dict) -> None:
        next(e for e in d["tensors"] if e["name"] == entry["name"])["shape"] = [most + 1]

    data = relay(base, edit)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="field 'length'"):
        bwn.read_tensors(path)
    with pytest.raises(AssertionError, match="count limit"):
        spec.read(data)


# --- numbers of any length in ignored metadata (FORMAT.md section 3) --------------------------------------------

HUGE = GOLDEN / "huge-numbers.bwn"
HUGE_SHA256 = "99875071220ef4fe6c36fbc8d7b934115c5b3a37c501e0cf5d0b031f1fbe3f3e"
#: JSON numbers no int64, binary64 or Python int() (4,300 digits at most) holds: valid where nobody reads them.
HUGE_NUMBERS = "[1" + "0" * 4999 + ",-" + "9" * 5000 + ",0." + "3" * 5000 + ",1e99999,-1E-99999]"


def _with_text(base: bytes, key: str, number_text: str, where: str = "metadata") -> bytes:
    """``base`` re-laid with ``"key": <number_text>`` (raw JSON text) added to its metadata (or a tensor entry)."""
    doc = json.loads(base[32 : 32 + struct.unpack_from("<Q", base, 16)[0]])
    payloads = [base[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    flags = struct.unpack_from("<I", base, 12)[0]
    marker = "@@number@@"
    offsets = [0] * len(payloads)
    for _ in range(8):
        for e, p, o in zip(doc["tensors"], payloads, offsets, strict=True):
            e.update(offset=o, length=len(p), crc32=zlib.crc32(p))
        (doc["metadata"] if where == "metadata" else doc["tensors"][0])[key] = marker
        text = json.dumps(doc, separators=(",", ":")).replace(f'"{marker}"', number_text)
        header = text.encode()
        new, pos = [], -(-(32 + len(header)) // 64) * 64
        for p in payloads:
            new.append(pos)
            pos = -(-(pos + len(p)) // 64) * 64
        if new == offsets:
            break
        offsets = new
    pre = struct.pack("<8sIIQI", box.MAGIC, 1, flags, len(header), 64)
    out = bytearray(pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header)
    for p, o in zip(payloads, offsets, strict=True):
        out += bytes(o - len(out)) + p
    return bytes(out)


def test_huge_numbers_in_ignored_metadata_golden(tmp_path: Path) -> None:
    """Section 3: any JSON number is valid in metadata a reader ignores, whatever its length; both readers take
    the golden file and return the same model as tiny-best.bwn."""
    data = _with_text((GOLDEN / "tiny-best.bwn").read_bytes(), "comment", HUGE_NUMBERS)
    if os.environ.get("BWN_REGENERATE_GOLDEN") == "1":
        HUGE.write_bytes(data)
        print(f'\n    HUGE_SHA256 = "{hashlib.sha256(data).hexdigest()}"')
        pytest.skip("golden file regenerated: paste the hash above")
    assert hashlib.sha256(HUGE.read_bytes()).hexdigest() == HUGE_SHA256, "golden file changed on disk"
    assert HUGE.read_bytes() == data
    assert bwn.read(HUGE).compare(bwn.read(GOLDEN / "tiny-best.bwn")) == []
    spec.model(data)
    assert len(spec.read(data)) == len(bwn.read_tensors(HUGE))
    bwn.describe(HUGE)


@pytest.mark.parametrize(
    "key,where,message",
    [
        ("zero_weights", "metadata", "zero_weights"),
        ("offset", "tensor", "'offset' must be an integer"),
    ],
)
def test_a_huge_integer_where_one_is_read_is_out_of_range(tmp_path: Path, key: str, where: str, message: str) -> None:
    """The same 5,000-digit integer in a field a reader reads is out of its range: refused, one line."""
    data = _with_text((GOLDEN / "tiny-best.bwn").read_bytes(), key, "1" + "0" * 4999, where)
    path = tmp_path / "m.bwn"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=message) as e:
        bwn.read(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    with pytest.raises(AssertionError):
        spec.read(data) if where == "tensor" else spec.model(data)


def test_flags_bit_0_in_a_tensor_container_means_nothing(tmp_path: Path) -> None:
    """Section 2: a container reader accepts bit 0 and ignores it; a model reader still refuses: no 'model'."""
    data = relay((GOLDEN / "tiny-branches.bwn").read_bytes(), flags=1)
    path = tmp_path / "c.bwn"
    path.write_bytes(data)
    assert len(bwn.read_tensors(path)) == len(spec.read(data)) == 15
    with pytest.raises(FormatError, match="not a model file"):
        bwn.read(path)


# --- what a model reader returns (FORMAT.md section 4.3) ---------------------------------------------------------


@pytest.mark.parametrize(
    "weights,bn_dtype,counter,want_bn,want_conv",
    [
        ("float32", np.float16, np.int32, np.float16, np.float32),
        ("float16", np.float16, np.int64, np.float32, np.float32),
        ("bfloat16", np.float16, np.int32, np.float32, np.float32),
        ("float32", np.float64, np.int64, np.float64, np.float32),
        ("bfloat16", np.float64, np.int64, np.float64, np.float32),
    ],
)
def test_returned_dtypes_follow_the_table(
    tmp_path: Path, weights: str, bn_dtype: type, counter: type, want_bn: type, want_conv: type
) -> None:
    """Section 4.3's table: BN statistics of any float dtype under every 'weights', values exact."""
    m = tiny_model(8, 0.5, binarized=False)
    kinds = m.arch.kinds
    floats = {
        k: v.astype(counter) if k.endswith("num_batches_tracked") else v.astype(bn_dtype) if kinds[k] == "bn" else v
        for k, v in m.floats.items()
    }
    path = tmp_path / "m.bwn"
    path.write_bytes(bwn.write(Model(m.arch, False, floats), weights=weights))
    out = bwn.read(path)
    assert out.floats["bn.running_var"].dtype == want_bn
    assert out.floats["bn.num_batches_tracked"].dtype == counter
    assert out.floats["group0.block0.conv0"].dtype == want_conv
    np.testing.assert_array_equal(out.floats["bn.running_var"], floats["bn.running_var"])  # exact, widened or not
    spec.model(path.read_bytes())
