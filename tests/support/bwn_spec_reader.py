"""A second .bwn reader written from docs/FORMAT.md alone, scalar and literal, for the tests only.

It shares no code with binexport: if it decodes the golden files to the same
arrays as ``binexport.formats.bwn``, the page is enough to write a reader.
Every MUST of the page is an ``assert`` here (a refused file raises
AssertionError). Also ``relay``: re-lay a file after editing its JSON header,
with valid checksums, and ``wrn_tensors``: the tensor list of section 4.
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np

EXP16 = [
    2147483648,
    2056437387,
    1969251188,
    1885761398,
    1805811301,
    1729250827,
    1655936265,
    1585730000,
    1518500250,
    1454120821,
    1392470869,
    1333434672,
    1276901417,
    1222764986,
    1170923762,
    1121280436,
]
T = 1 << 14
ITEM = {"f16": "<f2", "f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "bf16": "<u2"}
SIZE = {"f16": 2, "f32": 4, "f64": 8, "i32": 4, "i64": 8, "bf16": 2}  # section 5: payload bytes per element
#: Section 10.5: decoded bytes per element, what a reader returns (f16 and bf16 as binary32, a sign as a byte).
DECODED = {**SIZE, "f16": 4, "bf16": 4, "b1": 1}
MAX_HEADER = 1 << 20  # section 2
KEYS = {"name", "dtype", "shape", "encoding", "offset", "length", "crc32"}
ENCODINGS = {
    "raw": {"f16", "f32", "f64", "i32", "i64", "bf16"},
    "packed": {"b1"},
    "rans": {"b1"},
    "rans-ref": {"b1"},
    "f32-rans": {"f32"},
    "planes": {"f32", "f16", "bf16"},
}
#: Section 13.2: (e, m, bytes per value) of the planes dtypes.
PLANES = {"f32": (8, 23, 4), "f16": (5, 10, 2), "bf16": (8, 7, 2)}


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def relay(data: bytes, edit=None, flags: int | None = None) -> bytes:
    """``data`` re-laid with ``edit(doc)`` applied to the header after offsets and CRCs are set (section 5).

    ``flags``: the new preamble's flags, by default those of ``data``.
    """
    h = struct.unpack_from("<Q", data, 16)[0]
    doc = json.loads(data[32 : 32 + h])
    flags = struct.unpack_from("<I", data, 12)[0] if flags is None else flags
    return lay_out(doc, [data[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]], edit, flags)


def lay_out(doc: dict, payloads: list[bytes], edit=None, flags: int = 0) -> bytes:
    """A file of ``payloads`` under header ``doc``; ``edit(doc)`` runs after offsets, lengths and CRCs are set."""
    offsets = [0] * len(payloads)
    for _ in range(8):
        d = json.loads(json.dumps(doc))
        for e, p, o in zip(d["tensors"], payloads, offsets, strict=True):
            e.update(offset=o, length=len(p), crc32=zlib.crc32(p))
        if edit:
            edit(d)
        header = json.dumps(d, separators=(",", ":")).encode("utf-8", "surrogatepass")
        pos, new = align_up(32 + len(header), 64), []
        for p in payloads:
            new.append(pos)
            pos = align_up(pos + len(p), 64)
        if new == offsets:
            break
        offsets = new
    pre = struct.pack("<8sIIQI", b"\x89BWN\r\n\x1a\n", 1, flags, len(header), 64)
    out = bytearray(pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header)
    for p, o in zip(payloads, offsets, strict=True):
        out += bytes(max(0, o - len(out))) + p
    return bytes(out)


def frequencies(table: bytes) -> tuple[list[int], list[int], list[int]]:
    """Section 9.1: (alphabet values of the present entries, f, c)."""
    values = [k for k, v in enumerate(table) if v != 255]
    u = [(EXP16[table[k] % 16] >> (table[k] // 16)) + 1 for k in values]
    m, s = len(u), sum(u)
    f = [1 + x * (T - m) // s for x in u]
    f[f.index(max(f))] += T - sum(f)
    c = [sum(f[:i]) for i in range(m)]
    return values, f, c


def rans(stream: bytes, n: int, lanes: int, table: bytes) -> list[int]:
    """Section 9.3, one value at a time."""
    values, f, c = frequencies(table)
    x = list(struct.unpack_from(f"<{lanes}I", stream, 0))
    words = struct.unpack_from(f"<{(len(stream) - 4 * lanes) // 2}H", stream, 4 * lanes)
    q, out = 0, []
    for k in range(n):
        lane = k % lanes
        slot = x[lane] % T
        i = next(j for j in range(len(f)) if c[j] <= slot < c[j] + f[j])
        out.append(values[i])
        x[lane] = f[i] * (x[lane] // T) + slot - c[i]
        if x[lane] < 1 << 16:
            x[lane] = (x[lane] << 16) + words[q]
            q += 1
    assert q == len(words) and all(v == 1 << 16 for v in x)
    return out


def kernels(p: bytes, shape: list[int], ref: bool) -> np.ndarray:
    """Sections 8.3 and 8.4."""
    o, i_, kh, kw = shape
    k = kh * kw
    axis, wq, lanes = p[0], p[1], struct.unpack_from("<I", p, 4)[0]
    assert axis in ((0, 1) if ref else (0,)) and (ref or wq == 0)
    q0 = p[8 : 8 + 2**k]
    g, pp = (o, i_) if axis == 0 else (i_, o)
    pos = 8 + 2**k
    if not ref:
        vals = rans(p[pos:], g * pp, lanes, q0)
        s = [[vals[j * pp + x] for x in range(pp)] for j in range(g)]
    else:
        b = g.bit_length()
        bits = "".join(f"{byte:08b}" for byte in p[pos : pos + math.ceil(g * (b + 1) / 8)])
        parent = [int(bits[j * (b + 1) : j * (b + 1) + b] or "0", 2) - 1 for j in range(g)]
        flip = [int(bits[j * (b + 1) + b]) for j in range(g)]
        pos += math.ceil(g * (b + 1) / 8)
        sigma = [v for v in range(2**k) if q0[v] != 255]
        m = len(sigma)
        ranks = rans(p[pos + m :], g * pp, lanes, p[pos : pos + m])

        def order(r: int | None) -> list[int]:
            def score(i: int) -> int:
                return q0[sigma[i]] + (0 if r is None else wq * bin(sigma[i] ^ r).count("1"))

            return sorted(range(m), key=lambda i: (score(i), i))

        level = {}

        def lv(j: int) -> int:
            if j not in level:
                level[j] = 0 if parent[j] < 0 else lv(parent[j]) + 1
            return level[j]

        s = [[0] * pp for _ in range(g)]
        for j in sorted(range(g), key=lv):
            for x in range(pp):
                r = None if parent[j] < 0 else s[parent[j]][x] ^ ((2**k - 1) if flip[j] else 0)
                s[j][x] = sigma[order(r)[ranks[j * pp + x]]]
    out = np.zeros(shape, bool)
    for j in range(g):
        for x in range(pp):
            oo, ii = (j, x) if axis == 0 else (x, j)
            for t in range(k):
                out[oo, ii, t // kw, t % kw] = (s[j][x] >> (k - 1 - t)) & 1
    return out


def header(text: bytes) -> dict:
    """Section 3: strict JSON, integers without sign, fraction or exponent, strings of Unicode text."""

    def pairs(kv: list) -> dict:
        assert len({k for k, _ in kv}) == len(kv), "duplicate key"
        return dict(kv)

    def constant(name: str) -> None:
        raise AssertionError(name)

    doc = json.loads(
        text.decode("utf-8"),
        object_pairs_hook=pairs,
        parse_constant=constant,
        # section 3: -0 and integers past 20 digits (> 2^64 - 1) are no integer of any field; valid elsewhere
        parse_int=lambda t: float(t) if t == "-0" or len(t.lstrip("-")) > 20 else int(t),
    )
    assert not text.startswith(b"\xef\xbb\xbf")

    def levels(v: object) -> int:  # the top-level object is level 1
        kids = list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if kids is None else 1 + max([levels(x) for x in kids] + [0])

    def strings(v: object):
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            for key, x in v.items():
                yield key
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)

    assert levels(doc) <= 64
    for t in strings(doc):
        assert "\0" not in t and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in t)
    assert isinstance(doc, dict) and set(doc) == {"metadata", "tensors"}
    return doc


def count_of(shape: list[int]) -> int:
    """Section 10.1: the product of the non-zero dimensions, refused beyond 2^53; 0 if any dimension is 0."""
    n = 1
    for d in shape:
        if d:
            assert n <= (1 << 53) // d, "count overflow"
            n *= d
    return 0 if 0 in shape else n


def check_entry(e: dict) -> None:
    """Sections 5 and 10.2."""
    assert isinstance(e, dict) and KEYS <= set(e) <= KEYS | {"data_crc32"}
    name = e["name"]
    assert isinstance(name, str) and 1 <= len(name.encode("utf-8")) <= 256
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name)
    assert e["encoding"] in ENCODINGS and e["dtype"] in ENCODINGS[e["encoding"]]
    shape = e["shape"]
    assert isinstance(shape, list) and len(shape) <= 8
    assert all(type(d) is int and 0 <= d <= 2**31 - 1 for d in shape)
    for key, hi in (("offset", 2**64), ("length", 2**64), ("crc32", 2**32), ("data_crc32", 2**32)):
        assert key not in e or (type(e[key]) is int and 0 <= e[key] < hi)
    if e["encoding"] in ("raw", "packed") and "data_crc32" in e:  # section 7: the payload is the decoded data
        assert e["data_crc32"] == e["crc32"], "data_crc32 of a raw/packed tensor"


def planes(p: bytes, n: int, dtype: str) -> bytes:
    """Section 13.2, one symbol at a time: the values' little-endian bytes."""
    e, m, size = PLANES[dtype]
    k, r = m % 8, m // 8
    lanes, a_first, a_span = struct.unpack_from("<IHH", p, 0)
    a_table = bytes([255] * a_first) + p[8 : 9 + a_span]
    pos = 9 + a_span
    n_ctx = struct.unpack_from("<H", p, pos)[0]
    ctx = list(p[pos + 2 : pos + 2 + n_ctx])
    pos += 2 + n_ctx
    b_tables = {ctx[j]: p[pos + j * 2**k : pos + (j + 1) * 2**k] for j in range(n_ctx)}
    pos += n_ctx * 2**k
    low = p[pos : pos + r * n]
    stream = p[pos + r * n :]
    x = list(struct.unpack_from(f"<{lanes}I", stream, 0))
    words = struct.unpack_from(f"<{(len(stream) - 4 * lanes) // 2}H", stream, 4 * lanes)
    q = 0

    def decode(table: bytes, lane: int) -> int:
        nonlocal q
        values, f, c = frequencies(table)
        slot = x[lane] % T
        i = next(j for j in range(len(f)) if c[j] <= slot < c[j] + f[j])
        x[lane] = f[i] * (x[lane] // T) + slot - c[i]
        if x[lane] < 1 << 16:
            x[lane] = (x[lane] << 16) + words[q]
            q += 1
        return values[i]

    a_vals, b_vals = [0] * n, [0] * n
    for row in range(math.ceil(n / lanes)):
        w = min(lanes, n - row * lanes)
        for lane in range(w):
            a_vals[row * lanes + lane] = decode(a_table, lane)
        for lane in range(w):
            v = row * lanes + lane
            b_vals[v] = decode(b_tables.get(a_vals[v] // 2, bytes(2**k)), lane)
    assert q == len(words) and all(v == 1 << 16 for v in x)
    out = b""
    for v in range(n):
        lo = int.from_bytes(low[r * v : r * v + r], "little")
        bits = (a_vals[v] % 2) << (e + m) | (a_vals[v] // 2) << m | b_vals[v] << 8 * r | lo
        out += bits.to_bytes(size, "little")
    return out


def read(data: bytes, max_decoded_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a .bwn file: float arrays, and bool arrays (True = +1) for b1.

    Section 13.1: conv weights stored half (metadata ``weights``) come back as float32, as a model reader
    returns them; a bf16 tensor is always widened to float32.
    """
    magic, version, flags, h, a, crc = struct.unpack_from("<8sIIQII", data, 0)
    assert magic == b"\x89BWN\r\n\x1a\n" and version == 1 and flags in (0, 1)  # bit 0: section 4.1, see model()
    assert 2 <= h <= MAX_HEADER and 32 + h <= len(data) and a & (a - 1) == 0 and 64 <= a <= 65536
    assert zlib.crc32(data[32 : 32 + h], zlib.crc32(data[:28])) == crc
    doc = header(data[32 : 32 + h])
    for e in doc["tensors"]:
        check_entry(e)
    assert len({e["name"] for e in doc["tensors"]}) == len(doc["tensors"])
    limit = (
        max_decoded_bytes if max_decoded_bytes is not None else min(4 << 30, max(1 << 28, 64 * len(data)))
    )  # section 10.5, binexport's default
    assert type(limit) is int and limit >= 0  # section 10.5: always a finite limit
    assert sum(count_of(e["shape"]) * DECODED[e["dtype"]] for e in doc["tensors"]) <= limit, "decoded size"
    if not doc["tensors"]:
        assert len(data) == 32 + h  # section 5: no padding without a payload after it
        return {}
    out, pos = {}, align_up(32 + h, a)
    assert not any(data[32 + h : pos])
    for e in doc["tensors"]:
        assert e["offset"] == pos
        p = data[pos : pos + e["length"]]
        assert zlib.crc32(p) == e["crc32"]
        n = math.prod(e["shape"])
        limit = {
            "rans": 256 * len(p) >= n,
            "rans-ref": 256 * len(p) >= n,
            "f32-rans": 3 * n < len(p),
            "planes": {"f32": 2 * n, "f16": n, "bf16": -(-n // 32)}.get(e["dtype"], 0) <= len(p),
        }
        assert limit.get(e["encoding"], True), "count limit (section 10.3)"
        if e["encoding"] == "raw":
            assert len(p) == n * SIZE[e["dtype"]]
            out[e["name"]] = np.frombuffer(p, ITEM[e["dtype"]]).reshape(e["shape"])
        elif e["encoding"] == "packed":
            assert len(p) == (n + 7) // 8 and (n % 8 == 0 or p[-1] & ((1 << (8 - n % 8)) - 1) == 0)
            out[e["name"]] = np.array([(p[t // 8] >> (7 - t % 8)) & 1 for t in range(n)], bool).reshape(e["shape"])
        elif e["encoding"] == "f32-rans":
            lanes, first, span = struct.unpack_from("<I", p, 0)[0], p[4], p[5]
            assert first + span <= 255 and p[6] != 255 and p[6 + span] != 255  # both ends present
            top = f32_top_bytes(p, n, lanes, first, span)
            low = p[7 + span : 7 + span + 3 * n]
            raw = b"".join(low[3 * t : 3 * t + 3] + bytes([top[t]]) for t in range(n))
            out[e["name"]] = np.frombuffer(raw, "<f4").reshape(e["shape"])
        elif e["encoding"] == "planes":
            out[e["name"]] = np.frombuffer(planes(p, n, e["dtype"]), ITEM[e["dtype"]]).reshape(e["shape"])
        else:
            out[e["name"]] = kernels(p, e["shape"], e["encoding"] == "rans-ref")
        if "data_crc32" in e:  # section 7: the decoded data as raw or packed would hold it
            v = out[e["name"]]
            canon = np.packbits(v.ravel()).tobytes() if v.dtype == bool else v.astype(ITEM[e["dtype"]]).tobytes()
            assert zlib.crc32(canon) == e["data_crc32"], "data_crc32"
        if e["dtype"] == "bf16":
            out[e["name"]] = (out[e["name"]].astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "f16" and doc["metadata"].get("weights", "float32") != "float32":
            out[e["name"]] = out[e["name"]].astype(np.float32)
        pos = align_up(pos + e["length"], a)
    assert pos == align_up(len(data), a) and len(data) == doc["tensors"][-1]["offset"] + doc["tensors"][-1]["length"]
    return out


def f32_top_bytes(p: bytes, n: int, lanes: int, first: int, span: int) -> list[int]:
    """Section 8.5: the coded symbol is the index of a present entry; its top byte is that entry's alphabet value."""
    table = bytes([255] * first) + p[6 : 7 + span]  # alphabet value = top byte
    return rans(p[7 + span + 3 * n :], n, lanes, table)


def wrn_tensors(depth: int, widths: list[int], num_classes: int) -> list[tuple[str, list[int]]]:
    """Section 4's list: (name, shape) of every tensor of a WRN, in the order binexport writes them."""
    n = (depth - 2) // 6
    out = [("conv0", [widths[0], 3, 3, 3]), ("conv_last", [num_classes, widths[2], 1, 1])]

    def bn(prefix: str, c: int) -> list[tuple[str, list[int]]]:
        return [(prefix + ".running_mean", [c]), (prefix + ".running_var", [c]), (prefix + ".num_batches_tracked", [])]

    for g in range(3):
        for b in range(n):
            cin = widths[g - 1] if g > 0 and b == 0 else widths[g]
            p = f"group{g}.block{b}."
            out += [(p + "conv0", [widths[g], cin, 3, 3]), (p + "conv1", [widths[g], widths[g], 3, 3])]
            out += bn(p + "bn0", cin) + bn(p + "bn1", widths[g])
    out += bn("bn", widths[2]) + [("bn_last.weight", [num_classes]), ("bn_last.bias", [num_classes])]
    return out + bn("bn_last", num_classes)


# --- section 4, 4.1 and 13.1: the rules a *model* reader adds --------------------------------------------------

#: Section 4.1's table, one entry per family (`family` itself left out).
VARIANTS = {
    "mcdonnell-matlab": {
        "input_bn": True,
        "input_relu": True,
        "first_conv_binary": True,
        "head": "binary",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": False,
        "bn_eps": 0.0,
    },
    "mcdonnell-keras": {
        "input_bn": True,
        "input_relu": False,
        "first_conv_binary": True,
        "head": "binary",
        "downsample_padding": "tf-same",
        "pool_count_include_pad": False,
        "bn_eps": 1e-05,
    },
    "pytorchcv": {
        "input_bn": False,
        "input_relu": False,
        "first_conv_binary": True,
        "head": "binary-affine",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": True,
        "bn_eps": 1e-05,
    },
}
FLOATS = {"f16", "f32", "f64", "bf16"}


def same(got: object, want: object) -> bool:
    """Section 4.1: numbers compare by value, booleans and strings exactly."""
    num = (int, float)
    if type(want) in num:
        return type(got) in num and got == want
    return type(got) is type(want) and got == want


def model(data: bytes) -> dict:
    """Section 4's checks of a model file (after ``read``'s container checks); its architecture, or AssertionError.

    A file without metadata ``model`` is a tensor container, not a model: refused here, read by ``read``.
    """
    flags = struct.unpack_from("<I", data, 12)[0]
    h = struct.unpack_from("<Q", data, 16)[0]
    doc = header(data[32 : 32 + h])
    meta, tensors = doc["metadata"], doc["tensors"]
    assert isinstance(meta, dict) and meta.get("model") == "WRN_McDonnell", "not a model file"
    a = meta.get("architecture")
    assert isinstance(a, dict) and all(type(a.get(k)) is int for k in ("depth", "num_classes"))
    widths = a.get("widths")
    assert isinstance(widths, list) and len(widths) == 3 and all(type(w) is int for w in widths)
    depth, classes = a["depth"], a["num_classes"]
    assert depth >= 8 and (depth - 2) % 6 == 0, "depth 6n+2, n >= 1"
    assert widths[0] >= 1 and widths[1] == 2 * widths[0] and widths[2] == 2 * widths[1] and classes >= 1
    assert type(meta.get("binarized")) is bool
    assert type(meta.get("zero_weights")) is int and meta["zero_weights"] >= 0
    user = meta.get("user", {})
    assert isinstance(user, dict) and all(isinstance(v, str) for v in user.values())
    variant = meta.get("variant")
    assert (flags & 1) == ("variant" in meta), "flags bit 0 if and only if metadata has the key 'variant'"
    family = "pytorch"
    if flags & 1:
        assert isinstance(variant, dict) and variant.get("family") in VARIANTS
        family = variant["family"]
        want = VARIANTS[family]
        assert set(variant) == {"family", *want} and all(same(variant[k], v) for k, v in want.items())
        assert meta["binarized"] is True or family == "pytorchcv", "a variant with 1-bit conv0/conv_last is binarised"
    binarized = meta["binarized"]
    expect = dict(wrn_tensors(depth, widths, classes))
    binary = {n for n in expect if ".block" in n and n.endswith((".conv0", ".conv1"))}
    if family == "pytorchcv":  # section 4.1: the port's tensors, conv0 and conv_last 1-bit when binarised
        binary |= {"conv0", "conv_last"}
    elif family != "pytorch":  # section 4.1's changes to the list
        expect = {
            n: s
            for n, s in expect.items()
            if not n.endswith("num_batches_tracked") and n not in ("bn_last.weight", "bn_last.bias")
        }
        expect = {**{f"input_bn.{k}": [3] for k in ("weight", "bias", "running_mean", "running_var")}, **expect}
        binary |= {"conv0", "conv_last"}
    assert {e["name"]: e["shape"] for e in tensors} == expect, "the tensors of the architecture"
    assert meta["zero_weights"] <= sum(math.prod(expect[n]) for n in binary), "zero_weights bound"
    if "zero_positions" in meta:  # section 4.2: complete, sorted, in range, 1-bit tensors only, 65536 at most
        zp = meta["zero_positions"]
        assert isinstance(zp, dict) and binarized, "zero_positions: an object, binarised models only"
        for n, where in zp.items():
            assert n in binary and isinstance(where, list) and where, "zero_positions names a 1-bit tensor"
            assert all(type(i) is int and 0 <= i < math.prod(expect[n]) for i in where), "index in range"
            assert all(a < b for a, b in zip(where, where[1:], strict=False)), "strictly increasing"
        total = sum(len(w) for w in zp.values())
        assert total == meta["zero_weights"] and total <= 65536, "zero_positions: zero_weights of them, <= 65536"
    weights = meta.get("weights", "float32")
    assert weights in ("float32", "float16", "bfloat16") and (weights == "float32" or not binarized)
    convs = binary | {"conv0", "conv_last"}
    for e in tensors:
        n, d = e["name"], e["dtype"]
        if n.endswith("num_batches_tracked"):
            assert d in ("i64", "i32"), "counter dtype"
        elif n in binary and binarized:
            assert d == "b1", "a binarised model's 1-bit tensors"
        else:
            assert d in FLOATS, "float tensor dtype"
            if n in convs and weights != "float32":  # section 13.1
                assert d == {"float16": "f16", "bfloat16": "bf16"}[weights]
            else:
                assert d != "bf16", "bf16 only for conv weights under weights 'bfloat16'"
    return {"family": family, "depth": depth, "widths": widths, "num_classes": classes, "binarized": binarized}
