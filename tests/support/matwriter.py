"""A tiny level-5 MAT writer for crafting hostile files element by element (tests only; imports no binexport).

Every function returns the bytes of one element, and takes the sizes it writes as overridable arguments, so a
test can make any of them lie. ``matlab_vars`` / ``keras_vars`` give an honest McDonnell layout of a
``tiny_net`` to start from; :func:`mat_file` joins elements behind the 128-byte header.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

MI = {
    "int8": 1,
    "uint8": 2,
    "int16": 3,
    "uint16": 4,
    "int32": 5,
    "uint32": 6,
    "single": 7,
    "double": 9,
    "matrix": 14,
    "compressed": 15,
}
MX = {"cell": 1, "struct": 2, "object": 3, "char": 4, "sparse": 5, "double": 6, "single": 7, "uint8": 9, "function": 16}
_NP = {
    np.dtype("float64"): ("double", "double"),
    np.dtype("float32"): ("single", "single"),
    np.dtype("uint8"): ("uint8", "uint8"),
    np.dtype("bool"): ("uint8", "uint8"),
}


def header(text: bytes = b"MATLAB 5.0 MAT-file, crafted by binexport's tests") -> bytes:
    return text.ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"


def mat_file(*elements: bytes) -> bytes:
    return header() + b"".join(elements)


def element(mdtype: int, payload: bytes, declared: int | None = None) -> bytes:
    """A data element: 8-byte tag (``declared`` overrides the byte count), payload, padding to 8."""
    n = len(payload) if declared is None else declared
    return struct.pack("<II", mdtype, n) + payload + bytes(-len(payload) % 8)


def matrix(
    name: str,
    cls: int,
    dims: tuple[int, ...],
    body: bytes = b"",
    *,
    flags: int = 0,
    declared: int | None = None,
    name_bytes: bytes | None = None,
) -> bytes:
    """An miMATRIX element: array flags, dims (signed, any values), name, then ``body`` (data or children)."""
    inner = element(MI["uint32"], struct.pack("<II", cls | flags, 0))
    inner += element(MI["int32"], struct.pack(f"<{len(dims)}i", *dims))
    inner += element(MI["int8"], name.encode() if name_bytes is None else name_bytes)
    inner += body
    return element(MI["matrix"], inner, declared)


def numeric(
    name: str,
    arr: np.ndarray,
    *,
    cls: str | None = None,
    data_type: int | None = None,
    dims: tuple[int, ...] | None = None,
    data_declared: int | None = None,
) -> bytes:
    """A numeric array as MATLAB stores it (column-major); bool becomes a logical uint8 array."""
    a = np.asarray(arr)
    if a.ndim < 2:
        a = a.reshape(1, -1)
    mx, mi = _NP[a.dtype]
    raw = np.asfortranarray(a.astype(np.uint8) if a.dtype == bool else a).tobytes(order="F")
    body = element(MI[mi] if data_type is None else data_type, raw, data_declared)
    return matrix(name, MX[cls or mx], a.shape if dims is None else dims, body, flags=0x200 if a.dtype == bool else 0)


def cell(name: str, children: list[bytes], dims: tuple[int, ...] | None = None) -> bytes:
    """A cell array of the given child miMATRIX elements (children are written with empty names)."""
    return matrix(name, MX["cell"], (1, len(children)) if dims is None else dims, b"".join(children))


def compressed(elem: bytes, *, declared: int | None = None, level: int = 6) -> bytes:
    """An miCOMPRESSED element wrapping ``elem``; ``declared`` rewrites the inner miMATRIX byte count first."""
    if declared is not None:
        elem = elem[:4] + struct.pack("<I", declared) + elem[8:]
    z = zlib.compress(elem, level)
    return struct.pack("<II", MI["compressed"], len(z)) + z


def zeros_stream(prefix: bytes, zeros: int, chunk: int = 1 << 20) -> bytes:
    """zlib of ``prefix`` followed by ``zeros`` zero bytes, built without holding the zeros (for bombs)."""
    c = zlib.compressobj(9)
    out = [c.compress(prefix)]
    block = bytes(min(chunk, zeros))
    left = zeros
    while left:
        out.append(c.compress(block[: min(left, len(block))]))
        left -= min(left, len(block))
    out.append(c.flush())
    return b"".join(out)


def matlab_vars(net: dict[str, list]) -> dict[str, bytes]:
    """McDonnell's MATLAB layout of ``net`` (see mcdonnell_oracle.write_matlab), one element per variable."""
    bits, bns = net["bits"], net["bns"]
    k = len(bits)
    per = (k - 2) // 6

    def col(arrs: list[np.ndarray]) -> list[bytes]:
        return [numeric("", a) for a in arrs]

    return {
        "BinaryWeights": cell("BinaryWeights", [numeric("", b) for b in bits]),
        "LayerWeights": numeric(
            "LayerWeights", np.array([[np.sqrt(2.0 / np.prod(b.shape[:3]))] for b in bits], np.float32)
        ),
        "Stride": numeric("Stride", np.array([[2.0 if i in (1 + 2 * per, 1 + 4 * per) else 1.0 for i in range(k)]])),
        "Padding": numeric("Padding", np.array([[float(b.shape[0] // 2) for b in bits]])),
        "NumChannels": numeric("NumChannels", np.array([[3.0] + [float(b.shape[3]) for b in bits]])),
        "BNG": cell("BNG", col([g.reshape(-1, 1) for g, _, _, _ in bns]), (len(bns), 1)),
        "BNB": cell("BNB", col([b.reshape(-1, 1) for _, b, _, _ in bns]), (len(bns), 1)),
        "Moments": cell(
            "Moments",
            col([np.stack([m, np.sqrt(v + 1e-5)], 1).astype(np.float32) for _, _, m, v in bns]),
            (len(bns), 1),
        ),
    }


def keras_vars(net: dict[str, list]) -> dict[str, bytes]:
    """The tf.keras layout of ``net``: conv2d_N (1, kh, kw, in, out) logical, batch_normalization_v1_N rows."""
    d = {f"conv2d_{i}": numeric(f"conv2d_{i}", b[None]) for i, b in enumerate(net["bits"])}
    for i, (g, b, m, v) in enumerate(net["bns"]):
        rows = np.stack([g, b, m, v] if i == 0 else [m, v]).astype(np.float32)
        d[f"batch_normalization_v1_{i + 1}"] = numeric(f"batch_normalization_v1_{i + 1}", rows)
    return d


def build(variables: dict[str, bytes], compress: bool = True) -> bytes:
    return mat_file(*(compressed(e) if compress else e for e in variables.values() if e))


def matrix_prefix(name: str, cls: int, dims: tuple[int, ...], body_len: int, flags: int = 0) -> bytes:
    """The start of an miMATRIX element whose body (``body_len`` bytes) the caller streams after it."""
    head = matrix(name, cls, dims, flags=flags)
    return head[:4] + struct.pack("<I", len(head) - 8 + body_len) + head[8:]
