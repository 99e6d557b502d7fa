"""binexport.formats.onnx.graph: the sign table and the sign-bit expansion against numpy's unpackbits, run in
ONNX Runtime over odd shapes; the int8 and design graphs expand through the same pieces."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from binexport.formats.onnx import graph
from binexport.formats.onnx.designs import DESIGNS
from binexport.model import BinaryWeight

ONNX_DIR = Path(graph.__file__).parent
#: channel counts and sizes that are not multiples of 8 (the last byte is padded) and some that are
SHAPES = [(1,), (5,), (8,), (9, 9), (7, 44, 1, 1), (11, 3, 3, 3), (3, 5, 3, 3), (8, 8, 3, 3), (13, 11, 3, 3)]


def _run(g: graph.Graph, out: str, elem: int) -> np.ndarray:
    import onnxruntime as ort

    proto = helper.make_model(
        helper.make_graph(g.nodes, "t", [], [helper.make_tensor_value_info(out, elem, None)], g.initializers),
        opset_imports=[helper.make_opsetid("", 18)],
        ir_version=8,
    )
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {})[0]


def _oracle_rows(bits: int) -> np.ndarray:
    """(2**bits, bits) bool: row i is i's binary digits, most significant first, by np.unpackbits."""
    big = np.arange(2**bits, dtype=">u4").view(np.uint8).reshape(-1, 4)
    return np.unpackbits(big, axis=1)[:, 32 - bits :].astype(bool)


@pytest.mark.parametrize("bits", [1, 2, 8, 9])
@pytest.mark.parametrize(("one", "zero", "dtype"), [(0.25, -0.25, np.float32), (2, 0, np.int8), (1, -1, np.int8)])
def test_sign_table_is_unpackbits(bits: int, one: float, zero: float, dtype: type) -> None:
    t = graph.sign_table(bits, one, zero, dtype)
    assert t.dtype == dtype and t.shape == (2**bits, bits)
    np.testing.assert_array_equal(t, np.where(_oracle_rows(bits), dtype(one), dtype(zero)))


def test_scale_table_halves_round_alike_in_float16() -> None:
    t = graph.scale_table(8, 0.1, np.float16)
    assert t.dtype == np.float16 and set(np.unique(t).tolist()) == {float(np.float16(-0.1)), float(np.float16(0.1))}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["float32", "float16", "int8-zp0", "int8-zp1"])
def test_unpack_signs_round_trips_odd_shapes(shape: tuple[int, ...], kind: str) -> None:
    signs = np.random.default_rng(sum(shape)).random(shape) < 0.5
    g = graph.Graph(np.float32)
    if kind.startswith("int8"):
        zp = int(kind[-1])
        one, zero, dtype, elem = zp + 1, zp - 1, np.int8, onnx.TensorProto.INT8
    else:
        dtype = np.float16 if kind == "float16" else np.float32
        one, zero, elem = (
            dtype(0.3),
            -dtype(0.3),
            onnx.TensorProto.FLOAT16 if kind == "float16" else onnx.TensorProto.FLOAT,
        )
    table = g.const("table", graph.sign_table(8, one, zero, dtype))
    out = graph.unpack_signs(g, table, "w.bits", signs, out="w")
    assert out == "w"
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializers}["w.bits"]
    assert stored.dtype == np.uint8 and stored.size == -(-signs.size // 8)  # one bit per sign in the file
    np.testing.assert_array_equal(np.unpackbits(stored)[: signs.size].reshape(shape).astype(bool), signs)
    got = _run(g, out, elem)
    assert got.shape == shape and got.dtype == dtype
    np.testing.assert_array_equal(got, np.where(signs, dtype(one), dtype(zero)))


@pytest.mark.parametrize("shape", [(11, 3, 3, 3), (8, 8, 3, 3), (13, 11, 3, 3)])
@pytest.mark.parametrize("design", list(DESIGNS))
def test_every_design_expands_to_the_same_weight(shape: tuple[int, ...], design: str) -> None:
    signs = np.random.default_rng(3).random(shape) < 0.5
    bw = BinaryWeight(signs)
    g = graph.Graph(np.float32)
    out = DESIGNS[design](g, "conv", bw, np.float32)
    assert out == "conv.weight"
    s = np.float32(bw.scale)
    np.testing.assert_array_equal(_run(g, out, onnx.TensorProto.FLOAT), np.where(signs, s, -s))


def _imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    return [(n.module or "", a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]


@pytest.mark.parametrize("path", sorted(ONNX_DIR.glob("*.py")), ids=lambda p: p.name)
def test_onnx_modules_import_no_private_name(path: Path) -> None:
    private = [
        f"{m}.{n}"
        for m, n in _imports(path)
        if n.startswith("_") and not n.startswith("__") and m.startswith("binexport")
    ]
    assert not private


def test_graph_sits_below_its_siblings() -> None:
    """graph.py imports no sibling: the float, int8 and design graphs import it, never the other way."""
    assert not [m for m, _ in _imports(ONNX_DIR / "graph.py") if m.startswith("binexport.formats")]
