"""The .bwn rules of the format's first hardening: the branch golden and readers it catches, the decoded-size limit, header rules.

Each rule of docs/FORMAT.md added here has a test that the reader (binexport) and the spec reader
(tests/bwn_spec_reader.py) both enforce it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from support import bwn_spec_reader as spec
from support.bwn_crafted import branch_arrays, branches_file, constant_model_file
from support.bwn_spec_reader import relay
from support.models import tiny_model
from support.paths import GOLDEN

from binexport.data.synth import make_arch
from binexport.errors import FormatError
from binexport.formats import bwn
from binexport.formats.bwn import container as box

BRANCHES = GOLDEN / "tiny-branches.bwn"
BRANCHES_SHA256 = "fe163615cbadd889e2c549d512b41d561108da39b83898a412c033117a8545d0"
#: The three model goldens as binexport wrote them before data_crc32 existed: they must read forever.
LEGACY = GOLDEN / "legacy-tiny-rans-ref.bwn"


def _write(tmp_path: Path, data: bytes, name: str = "m.bwn") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _both_refuse(tmp_path: Path, data: bytes, message: str, model: bool = False) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(FormatError, match=message):
        (bwn.read if model else bwn.read_tensors)(path)
    with pytest.raises(AssertionError):
        spec.read(data)


# --- the branch golden --------------------------------------------------------------------------------------


def test_branch_golden_bytes() -> None:
    data = branches_file()
    if os.environ.get("BWN_REGENERATE_GOLDEN") == "1":
        BRANCHES.write_bytes(data)
        print(f'\n    BRANCHES_SHA256 = "{hashlib.sha256(data).hexdigest()}"')
        pytest.skip("golden file regenerated: paste the hash above")
    committed = BRANCHES.read_bytes()
    assert hashlib.sha256(committed).hexdigest() == BRANCHES_SHA256, "golden file changed on disk"
    assert data == committed, "the writer no longer produces the committed bytes"


@pytest.mark.parametrize("reader", ["binexport", "spec"])
def test_branch_golden_decodes_exactly(reader: str) -> None:
    got = bwn.read_tensors(BRANCHES) if reader == "binexport" else spec.read(BRANCHES.read_bytes())
    want = branch_arrays()
    assert list(got) == [name for name, *_ in want]
    for name, _, arr, _, _ in want:
        assert got[name].shape == arr.shape and got[name].tobytes() == arr.astype(got[name].dtype).tobytes(), name


def test_branch_golden_covers_every_branch() -> None:
    c = box.Container.open(BRANCHES)
    seen = set()
    for e in c.entries:
        p = c.payload(e)
        seen.add((e.encoding, e.dtype))
        if e.encoding == "packed" and e.count % 8:
            seen.add("packed padding bits")
        if e.count == 0:
            seen.add(f"empty {e.encoding}")
        if e.encoding in ("rans", "rans-ref"):
            k = e.shape[2] * e.shape[3]
            lanes = int(p[4:8].view("<u4")[0])
            seen |= {f"{e.encoding} axis {p[0]}", f"{e.encoding} K={k}"} | ({"lanes > 1"} if lanes > 1 else set())
            seen |= {"partial last row"} if e.shape[0] * e.shape[1] % lanes else set()
            seen |= {"absent kernel patterns"} if (p[8 : 8 + 2**k] == 255).any() else set()
        if e.encoding == "f32-rans":
            span = int(p[5])
            seen |= {"absent f32 top bytes inside the table"} if (p[6 : 7 + span] == 255).any() else set()
            seen |= {"f32-rans lanes > 1"} if int(p[:4].view("<u4")[0]) > 1 else set()
    assert seen >= {("raw", d) for d in ("f16", "f32", "f64", "i32", "i64")} | {
        ("packed", "b1"),
        "packed padding bits",
        "empty raw",
        "empty packed",
        "rans axis 0",
        "rans K=9",
        "rans K=3",
        "rans-ref axis 0",
        "rans-ref axis 1",
        "lanes > 1",
        "partial last row",
        "absent kernel patterns",
        "absent f32 top bytes inside the table",
        "f32-rans lanes > 1",
    }
    assert all(e.data_crc32 is not None for e in c.entries if e.encoding not in ("raw", "packed"))


# --- readers with the bugs an independent reader had: the old goldens pass them, the branch golden doesn't


def _lanes_reversed(real):
    """Decodes each stream right, then lays the values out lane-major (lane 0's values first)."""

    def rans(stream: bytes, n: int, lanes: int, table: bytes) -> list[int]:
        out = real(stream, n, lanes, table)
        return [out[lane + lanes * k] for lane in range(lanes) for k in range(-(-(n - lane) // lanes))]

    return rans


def _top_byte_as_present_index(p: bytes, n: int, lanes: int, first: int, span: int) -> list[int]:
    """Maps the f32-rans symbol to first + its index among present entries (right only without gaps)."""
    table = p[6 : 7 + span]
    present = [i for i, v in enumerate(table) if v != 255]
    values = spec.rans(p[7 + span + 3 * n :], n, lanes, table)
    return [first + present.index(v) for v in values]


BUGS = {
    "lanes lane-major": ("rans", None),
    "f32 top byte = first + present index": ("f32_top_bytes", _top_byte_as_present_index),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_buggy_readers_pass_the_model_goldens_but_fail_the_branch_golden(
    bug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attr, fake = BUGS[bug]
    monkeypatch.setattr(spec, attr, fake or _lanes_reversed(spec.rans))
    for name in ("tiny-best.bwn", "tiny-rans.bwn", "tiny-rans-ref.bwn"):  # one lane, no gaps: the bug hides
        theirs, ours = spec.read((GOLDEN / name).read_bytes()), bwn.read_tensors(GOLDEN / name)
        assert all(theirs[k].tobytes() == ours[k].tobytes() for k in ours), name
    with pytest.raises(AssertionError, match="data_crc32"):  # the decoded-data checksum catches it on any file
        spec.read(BRANCHES.read_bytes())
    doc_without = relay(BRANCHES.read_bytes(), lambda d: [e.pop("data_crc32", None) for e in d["tensors"]])
    wrong = spec.read(doc_without)  # and without the checksum, the decoded data differs from the golden's
    assert any(
        wrong[name].tobytes() != arr.astype(wrong[name].dtype).tobytes() for name, _, arr, _, _ in branch_arrays()
    )


def test_data_crc32_mismatch_is_refused(tmp_path: Path) -> None:
    def bump(d: dict) -> None:
        e = next(t for t in d["tensors"] if "data_crc32" in t)
        e["data_crc32"] ^= 1

    _both_refuse(tmp_path, relay(BRANCHES.read_bytes(), bump), "field 'data_crc32'")


def test_files_without_data_crc32_still_read(tmp_path: Path) -> None:
    legacy = bwn.read(LEGACY)
    assert all(e.data_crc32 is None for e in box.Container.open(LEGACY).entries)
    assert legacy.compare(bwn.read(GOLDEN / "tiny-rans-ref.bwn")) == []
    assert spec.read(LEGACY.read_bytes()).keys() == spec.read((GOLDEN / "tiny-rans-ref.bwn").read_bytes()).keys()


# --- the decoded-size limit ---------------------------------------------------------------------------------


def test_default_limit() -> None:
    assert box.default_limit(1000) == 256 << 20
    assert box.default_limit(10 << 20) == 640 << 20
    assert box.default_limit(1 << 30) == 4 << 30


def test_constant_kernels_over_the_limit_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = constant_model_file(20, 4)  # legal: ~60 x its size once decoded
    path = _write(tmp_path, data)
    decoded = sum(e.decoded_bytes for e in box.Container.open(path, max_decoded_bytes=1 << 40).entries)
    assert decoded > 50 * len(data)
    assert not bwn.read(path).binary["group0.block0.conv0"].signs.any()  # pattern 0: every weight -1

    def never(*args: object) -> None:
        raise AssertionError("decoded before the limit was checked")

    monkeypatch.setattr(bwn.rans, "decode_jobs", never)
    for call in (bwn.read, bwn.read_tensors, bwn.describe):
        with pytest.raises(
            FormatError,
            match=f"decode to {decoded:,} bytes, over the limit of {decoded - 1:,} "
            r"\(max_decoded_bytes\)",
        ):
            call(path, max_decoded_bytes=decoded - 1)
    with pytest.raises(AssertionError, match="decoded size"):
        spec.read(data, max_decoded_bytes=decoded - 1)


def test_the_limit_reaches_every_api_path(tmp_path: Path) -> None:
    import binexport as api

    path = _write(tmp_path, bwn.write(tiny_model(8, 0.5)))
    with pytest.raises(FormatError, match="max_decoded_bytes"):
        api.load(path, max_decoded_bytes=1000)
    assert api.load(path, max_decoded_bytes=10**6).arch.name == "WRN-8-0.5"


def test_the_default_limit_scales_with_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, constant_model_file(20, 4))
    monkeypatch.setattr(box, "default_limit", lambda size: 32 * size)  # the floor hides it at this size
    with pytest.raises(FormatError, match="the default for a"):
        bwn.describe(path)


# --- header rules (section 3) -------------------------------------------------------------------------------


def _container(header: bytes) -> bytes:
    pre = box._PREAMBLE.pack(box.MAGIC, 1, 0, len(header), 64, 0)[:28]
    return pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header


def test_whitespace_in_the_header_is_allowed(tmp_path: Path) -> None:
    data = BRANCHES.read_bytes()
    doc = json.loads(data[32 : 32 + struct.unpack_from("<Q", data, 16)[0]])
    payloads = [data[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    pretty = b""
    for _ in range(4):  # offsets depend on the header's length: iterate to a fixed point
        pos, table = box._align(32 + len(pretty), 64), []
        for e, p in zip(doc["tensors"], payloads, strict=True):
            table.append({**e, "offset": pos})
            pos = box._align(pos + len(p), 64)
        pretty = b" \r\n" + json.dumps({**doc, "tensors": table}, indent="\t").encode() + b"\n\t "
    out = bytearray(_container(pretty))
    for p in payloads:
        out += bytes(-len(out) % 64) + p
    got = bwn.read_tensors(_write(tmp_path, bytes(out)))
    assert got.keys() == spec.read(bytes(out)).keys() == bwn.read_tensors(BRANCHES).keys()


@pytest.mark.parametrize("levels,ok", [(64, True), (65, False)])
def test_nesting_levels_are_counted_from_the_top_object(tmp_path: Path, levels: int, ok: bool) -> None:
    # the top object is level 1, "metadata" level 2, then levels - 2 arrays
    header = ('{"metadata":{"x":' + "[" * (levels - 2) + "]" * (levels - 2) + '},"tensors":[]}').encode()
    data = _container(header)
    path = _write(tmp_path, data)
    if ok:
        assert box.Container.open(path).entries == [] and spec.read(data) == {}
    else:
        with pytest.raises(FormatError, match="nests deeper than 64"):
            box.Container.open(path)
        with pytest.raises(AssertionError):
            spec.read(data)


@pytest.mark.parametrize(
    "text,message",
    [
        ('"offset":-0', "'offset' must be an integer"),
        ('"crc32":-0', "'crc32' must be an integer"),
        ('"length":1.0', "'length' must be an integer"),
        ('"length":18446744073709551616', "'length' must be an integer"),
    ],
)
def test_integer_fields(tmp_path: Path, text: str, message: str) -> None:
    data = BRANCHES.read_bytes()
    key = text.split(":")[0]
    h = struct.unpack_from("<Q", data, 16)[0]
    header = data[32 : 32 + h].decode()
    start = header.index(key + ":")
    end = start + len(key) + 1
    while header[end] not in ",}":
        end += 1
    new = (header[:start] + text + header[end:]).encode()
    _both_refuse(tmp_path, _container(new) + data[32 + h :], message)


@pytest.mark.parametrize(
    "name,message",
    [
        ("a\u0000b", "U\\+0000"),
        ("a\ud800b", "lone surrogate"),
        ("tab\there", "control character"),
        ("del\x7f", "control character"),
        ("c1\x85", "control character"),
        ("é" * 129, "1 to 256 UTF-8 bytes"),
    ],
)
def test_tensor_names(tmp_path: Path, name: str, message: str) -> None:
    data = relay(BRANCHES.read_bytes(), lambda d: d["tensors"][0].__setitem__("name", name))
    _both_refuse(tmp_path, data, message)


def test_lone_surrogates_are_refused_in_metadata_too_but_pairs_are_fine(tmp_path: Path) -> None:
    _both_refuse(
        tmp_path, relay(BRANCHES.read_bytes(), lambda d: d["metadata"].__setitem__("x", "\udcff")), "lone surrogate"
    )
    ok = relay(BRANCHES.read_bytes(), lambda d: d["metadata"].__setitem__("x\U0001f600", "\U0001f600"))
    assert "x\U0001f600" in box.Container.open(_write(tmp_path, ok)).metadata and spec.read(ok)


# --- counts, tables, axes, the empty file -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,ok",
    [
        ([0, 2**31 - 1, 2**22], True),  # count 0; the non-zero dimensions multiply to < 2^53
        ([2**31 - 1, 2**22, 0], True),  # the same, whichever place the 0 takes
        ([2**31 - 1, 2**31 - 1, 0], False),  # count 0, but the other dimensions multiply past 2^53
        ([0] + [2**31 - 1] * 7, False),
    ],
)
def test_counts_with_a_zero_dimension(tmp_path: Path, shape: list[int], ok: bool) -> None:
    data = relay(
        BRANCHES.read_bytes(),
        lambda d: next(t for t in d["tensors"] if t["name"] == "raw-f32-empty").__setitem__("shape", shape),
    )
    if ok:
        assert bwn.read_tensors(_write(tmp_path, data))["raw-f32-empty"].shape == tuple(shape)
        assert spec.read(data)["raw-f32-empty"].shape == tuple(shape)
    else:
        _both_refuse(tmp_path, data, "non-zero dimensions exceeds 2\\^53")


def _edit_payload(name: str, edit) -> bytes:
    data = BRANCHES.read_bytes()
    h = struct.unpack_from("<Q", data, 16)[0]
    doc = json.loads(data[32 : 32 + h])
    payloads = [bytearray(data[e["offset"] : e["offset"] + e["length"]]) for e in doc["tensors"]]
    k = next(i for i, e in enumerate(doc["tensors"]) if e["name"] == name)
    edit(payloads[k])
    return spec.lay_out(doc, [bytes(p) for p in payloads])


@pytest.mark.parametrize("end", ["first", "last"])
def test_f32_rans_table_ends_must_be_present(tmp_path: Path, end: str) -> None:
    def absent(p: bytearray) -> None:
        p[6 if end == "first" else 6 + p[5]] = 255

    _both_refuse(tmp_path, _edit_payload("f32-rans-gaps-3-lanes", absent), "first and last entries")


@pytest.mark.parametrize(
    "name,axis,message",
    [
        ("rans-ref-axis0-4-lanes", 2, "axis is 2, expected 0 or 1"),
        ("rans-ref-axis1-5-lanes", 255, "axis is 255, expected 0 or 1"),
        ("rans-3-lanes-partial-row", 1, "axis is 1, expected 0"),
    ],
)
def test_axis_values(tmp_path: Path, name: str, axis: int, message: str) -> None:
    _both_refuse(tmp_path, _edit_payload(name, lambda p: p.__setitem__(0, axis)), message)


def test_a_file_without_tensors_ends_at_32_plus_h(tmp_path: Path) -> None:
    data = _container(b'{"metadata":{},"tensors":[]}')
    assert box.Container.open(_write(tmp_path, data)).entries == [] and spec.read(data) == {}
    padded = data + bytes(-len(data) % 64)
    with pytest.raises(FormatError, match="trailing bytes"):
        box.Container.open(_write(tmp_path, padded, "padded.bwn"))
    with pytest.raises(AssertionError):
        spec.read(padded)


def test_b1_is_only_for_the_4d_block_convs(tmp_path: Path) -> None:
    def one_bit_bn(d: dict) -> None:
        e = next(t for t in d["tensors"] if t["name"] == "bn_last.running_mean")
        e.update(dtype="b1", encoding="packed")

    model = tiny_model(8, 0.5)
    data = bwn.write(model, encoding="packed")
    h = struct.unpack_from("<Q", data, 16)[0]
    doc = json.loads(data[32 : 32 + h])
    payloads = [data[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    k = next(i for i, e in enumerate(doc["tensors"]) if e["name"] == "bn_last.running_mean")
    payloads[k] = bytes(2)  # 10 bits
    with pytest.raises(FormatError, match="only block convs may be 1-bit"):
        bwn.read(_write(tmp_path, spec.lay_out(doc, payloads, one_bit_bn)))


@pytest.mark.parametrize("depth,width,classes", [(8, 0.25, 10), (14, 1, 100), (20, 10, 100)])
def test_the_tensor_list_of_section_4_is_the_architecture(depth: int, width: float, classes: int) -> None:
    arch = make_arch(depth, width, classes)
    listed = spec.wrn_tensors(depth, list(arch.widths), classes)
    assert listed == [(s.name, list(s.shape)) for s in arch.specs()]
