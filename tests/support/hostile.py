"""Makers of hostile inputs for tests/hostile/: hand-built pickles, zips, PNGs and ONNX graphs.

Each maker writes bytes a stranger could send; none of them needs the code under test.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

# --- pickle opcodes, protocol 2, enough to declare any storage -------------------------------------------------


def p_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def p_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_entry(
    name: str,
    key: str,
    numel: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    storage: str = "FloatStorage",
    offset: int = 0,
    legacy: bool = False,
) -> bytes:
    """``name: _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())``."""
    pid = [p_str("storage"), p_global("torch", storage), p_str(key), p_str("cpu"), p_int(numel)]
    if legacy:
        pid.append(b"N")
    args = p_tuple(
        p_tuple(*pid) + b"Q",
        p_int(offset),
        p_tuple(*map(p_int, size)),
        p_tuple(*map(p_int, stride)),
        b"\x89",
        p_global("collections", "OrderedDict") + b")R",
    )
    return p_str(name) + p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_pickle(entries: list[bytes]) -> bytes:
    return b"\x80\x02}(" + b"".join(entries) + b"u."


def torch_zip(data_pkl: bytes, records: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    """A zip laid out as torch.save lays it out (archive/data.pkl, archive/data/KEY, version)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", b"little")
        for key, raw in records.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def patch_central_sizes(data: bytes, member: str, size: int) -> bytes:
    """The zip with ``member``'s sizes in the central directory rewritten to ``size``."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        nlen = struct.unpack("<H", out[pos + 28 : pos + 30])[0]
        if out[pos + 46 : pos + 46 + nlen].decode() == member:
            out[pos + 20 : pos + 28] = struct.pack("<II", size, size)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def zip_bomb(uncompressed: int) -> bytes:
    """A zip whose deflated data.pkl expands to ``uncompressed`` bytes of zeros, built without expanding it."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    body = chunk * (uncompressed >> 20) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    name = b"archive/data.pkl"
    local = (
        struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(body), uncompressed & 0xFFFFFFFF, len(name), 0)
        + name
    )
    central = (
        struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0,
            0,
            len(body),
            uncompressed & 0xFFFFFFFF,
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
    )
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


def legacy_file(main_pickle: bytes, keys: list[str], data: bytes = b"") -> bytes:
    """A legacy (pre-zip) torch.save file: magic, protocol, sys_info, objects, storage keys, storage bytes."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps(sys_info, protocol=2)
        + main_pickle
        + pickle.dumps(keys, protocol=2)
        + data
    )


# --- PNG ------------------------------------------------------------------------------------------------------


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png(
    width: int = 32,
    height: int = 32,
    depth: int = 8,
    colour: int = 2,
    interlace: int = 0,
    idat: bytes | None = None,
    ftype: int = 0,
) -> bytes:
    ch = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour, 3)
    if idat is None:
        raw = b"".join(bytes([ftype]) + bytes(width * ch) for _ in range(min(height, 64)))
        idat = zlib.compress(raw)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def good_png(seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(32))
    return png(idat=zlib.compress(raw))


# --- ONNX -----------------------------------------------------------------------------------------------------


def onnx_graph(kind: str) -> bytes:
    """Small ONNX models that are valid protobuf but not a WRN classifier binexport can run."""
    import onnx
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", f, ["N", 3, 32, 32])]
    out = helper.make_tensor_value_info("y", f, None)
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)]
    meta: dict[str, str] = {}
    inits = []
    if kind == "no-input":
        inputs = []
        inits = [helper.make_tensor("x", f, [1, 3, 32, 32], np.zeros(3072, np.float32).tolist())]
    elif kind == "two-inputs":
        inputs.append(helper.make_tensor_value_info("z", f, ["N", 3, 32, 32]))
    elif kind == "rank-2":
        inputs = [helper.make_tensor_value_info("x", f, ["N", 3072])]
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
    elif kind == "huge-fixed-batch":
        inputs = [helper.make_tensor_value_info("x", f, [1_000_000_000, 3, 32, 32])]
    elif kind == "string-input":
        inputs = [helper.make_tensor_value_info("x", TensorProto.STRING, ["N", 3, 32, 32])]
        nodes = [helper.make_node("Identity", ["x"], ["y"])]
    elif kind == "bad-metadata":
        meta = {"binexport.weights": "13-bit\nnew line", "binexport.input": "x\ny"}
    elif kind == "wrong-classes":
        meta = {"binexport.architecture": "WRN-8-1", "binexport.num_classes": "7"}
    elif kind == "int-output-wrong-shape":
        nodes = [helper.make_node("Shape", ["x"], ["y"])]
    m = helper.make_model(
        helper.make_graph(nodes, "g", inputs, [out], inits), opset_imports=[helper.make_opsetid("", 13)]
    )
    m.ir_version = 8
    for k, v in meta.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return m.SerializeToString()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
