"""A second .bwn reader written from docs/FORMAT.md alone, scalar and literal, for the tests only.

It shares no code with binexport: if it decodes the golden files to the same
arrays as ``binexport.formats.bwn``, the page is enough to write a reader.
Also ``relay``: re-lay a file after editing its JSON header, with valid checksums.
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np

EXP16 = [2147483648, 2056437387, 1969251188, 1885761398, 1805811301, 1729250827, 1655936265, 1585730000,
         1518500250, 1454120821, 1392470869, 1333434672, 1276901417, 1222764986, 1170923762, 1121280436]
T = 1 << 14
ITEM = {"f16": "<f2", "f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "bf16": "<u2"}
#: Section 13.2: (e, m, bytes per value) of the planes dtypes.
PLANES = {"f32": (8, 23, 4), "f16": (5, 10, 2), "bf16": (8, 7, 2)}


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def relay(data: bytes, edit=None) -> bytes:
    """``data`` re-laid with ``edit(doc)`` applied to the header after offsets and CRCs are set (section 5)."""
    h = struct.unpack_from("<Q", data, 16)[0]
    doc = json.loads(data[32:32 + h])
    return lay_out(doc, [data[e["offset"]:e["offset"] + e["length"]] for e in doc["tensors"]], edit)


def lay_out(doc: dict, payloads: list[bytes], edit=None) -> bytes:
    """A file of ``payloads`` under header ``doc``; ``edit(doc)`` runs after offsets, lengths and CRCs are set."""
    offsets = [0] * len(payloads)
    for _ in range(8):
        d = json.loads(json.dumps(doc))
        for e, p, o in zip(d["tensors"], payloads, offsets):
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
    pre = struct.pack("<8sIIQI", b"\x89BWN\r\n\x1a\n", 1, 0, len(header), 64)
    out = bytearray(pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header)
    for p, o in zip(payloads, offsets):
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
    q0 = p[8:8 + 2 ** k]
    g, pp = (o, i_) if axis == 0 else (i_, o)
    pos = 8 + 2 ** k
    if not ref:
        vals = rans(p[pos:], g * pp, lanes, q0)
        s = [[vals[j * pp + x] for x in range(pp)] for j in range(g)]
    else:
        b = g.bit_length()
        bits = "".join(f"{byte:08b}" for byte in p[pos:pos + math.ceil(g * (b + 1) / 8)])
        parent = [int(bits[j * (b + 1):j * (b + 1) + b] or "0", 2) - 1 for j in range(g)]
        flip = [int(bits[j * (b + 1) + b]) for j in range(g)]
        pos += math.ceil(g * (b + 1) / 8)
        sigma = [v for v in range(2 ** k) if q0[v] != 255]
        m = len(sigma)
        ranks = rans(p[pos + m:], g * pp, lanes, p[pos:pos + m])

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
                r = None if parent[j] < 0 else s[parent[j]][x] ^ ((2 ** k - 1) if flip[j] else 0)
                s[j][x] = sigma[order(r)[ranks[j * pp + x]]]
    out = np.zeros(shape, bool)
    for j in range(g):
        for x in range(pp):
            oo, ii = (j, x) if axis == 0 else (x, j)
            for t in range(k):
                out[oo, ii, t // kw, t % kw] = (s[j][x] >> (k - 1 - t)) & 1
    return out


def planes(p: bytes, n: int, dtype: str) -> bytes:
    """Section 13.2, one symbol at a time: the values' little-endian bytes."""
    e, m, size = PLANES[dtype]
    k, r = m % 8, m // 8
    lanes, a_first, a_span = struct.unpack_from("<IHH", p, 0)
    a_table = bytes([255] * a_first) + p[8:9 + a_span]
    pos = 9 + a_span
    n_ctx = struct.unpack_from("<H", p, pos)[0]
    ctx = list(p[pos + 2:pos + 2 + n_ctx])
    pos += 2 + n_ctx
    b_tables = {ctx[j]: p[pos + j * 2 ** k:pos + (j + 1) * 2 ** k] for j in range(n_ctx)}
    pos += n_ctx * 2 ** k
    low = p[pos:pos + r * n]
    stream = p[pos + r * n:]
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
            b_vals[v] = decode(b_tables.get(a_vals[v] // 2, bytes(2 ** k)), lane)
    assert q == len(words) and all(v == 1 << 16 for v in x)
    out = b""
    for v in range(n):
        lo = int.from_bytes(low[r * v:r * v + r], "little")
        bits = (a_vals[v] % 2) << (e + m) | (a_vals[v] // 2) << m | b_vals[v] << 8 * r | lo
        out += bits.to_bytes(size, "little")
    return out


def read(data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a .bwn file: float arrays, and bool arrays (True = +1) for b1.

    Section 13.1: conv weights stored half (metadata ``weights``) come back as float32, as a model reader
    returns them; a bf16 tensor is always widened to float32.
    """
    magic, version, flags, h, a, crc = struct.unpack_from("<8sIIQII", data, 0)
    assert magic == b"\x89BWN\r\n\x1a\n" and version == 1 and flags == 0
    assert zlib.crc32(data[32:32 + h], zlib.crc32(data[:28])) == crc
    doc = json.loads(data[32:32 + h].decode("utf-8"))
    out, pos = {}, align_up(32 + h, a)
    for e in doc["tensors"]:
        assert e["offset"] == pos
        p = data[pos:pos + e["length"]]
        assert zlib.crc32(p) == e["crc32"]
        n = math.prod(e["shape"])
        if e["encoding"] == "raw":
            out[e["name"]] = np.frombuffer(p, ITEM[e["dtype"]]).reshape(e["shape"])
        elif e["encoding"] == "packed":
            out[e["name"]] = np.array([(p[t // 8] >> (7 - t % 8)) & 1 for t in range(n)], bool).reshape(e["shape"])
        elif e["encoding"] == "f32-rans":
            lanes, first, span = struct.unpack_from("<I", p, 0)[0], p[4], p[5]
            table = bytes([255] * first) + p[6:7 + span]
            low = p[7 + span:7 + span + 3 * n]
            top = rans(p[7 + span + 3 * n:], n, lanes, table)
            raw = b"".join(low[3 * t:3 * t + 3] + bytes([top[t]]) for t in range(n))
            out[e["name"]] = np.frombuffer(raw, "<f4").reshape(e["shape"])
        elif e["encoding"] == "planes":
            out[e["name"]] = np.frombuffer(planes(p, n, e["dtype"]), ITEM[e["dtype"]]).reshape(e["shape"])
        else:
            out[e["name"]] = kernels(p, e["shape"], e["encoding"] == "rans-ref")
        if e["dtype"] == "bf16":
            out[e["name"]] = (out[e["name"]].astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "f16" and doc["metadata"].get("weights", "float32") != "float32":
            out[e["name"]] = out[e["name"]].astype(np.float32)
        pos = align_up(pos + e["length"], a)
    assert pos == align_up(len(data), a) and len(data) == doc["tensors"][-1]["offset"] + doc["tensors"][-1]["length"]
    return out
