"""safetensors: round trips, the safetensors package as oracle both ways, the docs' numpy lines, lying headers."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.models import normalized_batch, tiny_model
from support.paths import ROOT
from support.refusals import assert_refused

from binexport import formats, pack
from binexport.data.synth import random_state
from binexport.errors import FormatError, InputError
from binexport.formats import safetensors as st
from binexport.model import Arch, Model, binarize

st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is the tests' oracle (.[test])")
DOCS = ROOT / "docs" / "safetensors.md"


def _variant(family: str) -> Model:
    arch = Arch.of(8, (4, 8, 16), 10, family)
    return binarize(Model(arch, False, random_state(arch, 1)))


def _write(tmp_path: Path, model: Model, name: str = "m.safetensors", **options: object) -> Path:
    p = tmp_path / name
    p.write_bytes(st.write(model, **options))
    return p


@pytest.mark.parametrize("family", ["pytorch", "mcdonnell-matlab", "mcdonnell-keras", "pytorchcv"])
def test_round_trip_every_family_with_odd_channel_counts(tmp_path: Path, family: str) -> None:
    model = tiny_model(8, 0.25) if family == "pytorch" else _variant(family)  # widths 4, 8, 16: padded bytes
    back = formats.load(_write(tmp_path, model))
    assert model.compare(back) == [] and back.source.format == "safetensors"
    assert back.arch == model.arch


@pytest.mark.parametrize(("weights", "dtype"), [("float32", "F32"), ("float16", "F16"), ("bfloat16", "BF16")])
def test_full_precision_pack_is_proven_and_stores_the_asked_dtype(make_run, tmp_path: Path, weights, dtype) -> None:
    run = make_run(binarize=False)
    out = tmp_path / f"fp-{weights}.safetensors"
    r = pack(run, out, format="safetensors", weights=weights)
    assert (r.output_format, r.weights, r.output_bytes) == ("safetensors", weights, out.stat().st_size)
    header = json.loads(out.read_bytes()[8 : 8 + struct.unpack("<Q", out.read_bytes()[:8])[0]])
    assert header["group0.block0.conv0"]["dtype"] == dtype and header["bn.running_var"]["dtype"] == "F32"
    assert header["__metadata__"]["weights"] == weights and header["__metadata__"]["binarized"] == "false"


def test_the_package_reads_our_files_and_we_read_the_packages(tmp_path: Path) -> None:
    model = tiny_model(8, 0.25)
    p = _write(tmp_path, model, metadata={"dataset": "CIFAR-10"})
    tensors = st_numpy.load_file(str(p))
    for name, arr in model.floats.items():
        assert tensors[name].dtype == arr.dtype and np.array_equal(tensors[name], arr)
    for name, b in model.binary.items():
        assert tensors[name].dtype == np.uint8 and np.array_equal(np.packbits(b.signs, axis=1), tensors[name])
    from safetensors import safe_open

    with safe_open(str(p), "np") as f:
        meta = f.metadata()
    assert meta["user.dataset"] == "CIFAR-10" and meta["format"] == st.FORMAT_ID
    theirs = tmp_path / "theirs.safetensors"
    theirs.write_bytes(st_numpy.save(tensors, metadata=meta))  # the package's own layout and order
    assert model.compare(formats.load(theirs)) == []


def _numpy_lines() -> str:
    text = DOCS.read_text()
    m = re.search(r"<!-- numpy-lines[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/safetensors.md lost its numpy-lines block"
    return m.group(1)


_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "binexport" or name.startswith("binexport."):
            raise ImportError("binexport is blocked in this test")
sys.meta_path.insert(0, Block())
try:
    import binexport
except ImportError:
    pass
else:
    raise SystemExit("binexport was importable")
path, _dest = sys.argv[1], sys.argv[2]
exec(compile(open(sys.argv[3]).read(), "docs-numpy-lines", "exec"))
import numpy as np
np.savez(_dest, **weights)
assert "binexport" not in sys.modules and "torch" not in sys.modules
"""


def _docs_weights(tmp_path: Path, model_file: Path) -> dict[str, np.ndarray]:
    code = tmp_path / "lines.py"
    code.write_text(_numpy_lines())
    out = tmp_path / "weights.npz"
    res = subprocess.run(
        [sys.executable, "-c", _BLOCKER, str(model_file), str(out), str(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _check_docs_lines(tmp_path: Path, model: Model, x: np.ndarray) -> None:
    """The docs' lines, run without binexport, give the tensors binexport's model uses, and the same logits."""
    from binexport.runtimes.torch_ref import reference_logits

    bwn = tmp_path / "m.bwn"
    bwn.write_bytes(formats.get("bwn").write(model))
    weights = _docs_weights(tmp_path, _write(tmp_path, model))
    ref = formats.load(bwn)
    assert sorted(weights) == sorted(s.name for s in ref.arch.specs())
    for name, w in weights.items():
        want = ref.dense(name)
        assert w.dtype == want.dtype and w.shape == want.shape and w.tobytes() == want.tobytes(), name
    plain = Model(ref.arch, False, weights)  # the numpy weights as a float network: no binexport reader involved
    assert reference_logits(plain, x).tobytes() == reference_logits(ref, x).tobytes()


def test_docs_numpy_lines_rebuild_the_network_without_binexport(tmp_path: Path) -> None:
    _check_docs_lines(tmp_path, tiny_model(8, 0.25, seed=3), normalized_batch(4))


@pytest.mark.slow
def test_docs_numpy_lines_on_the_published_checkpoint(real_packed: Path, tmp_path: Path) -> None:
    model = formats.load(real_packed)
    r = pack(real_packed, tmp_path / "real.safetensors", format="safetensors")
    assert abs(r.output_bytes - real_packed.stat().st_size) < 0.01 * real_packed.stat().st_size  # ~3.5 MB
    assert model.compare(formats.load(tmp_path / "real.safetensors")) == []
    _check_docs_lines(tmp_path, model, normalized_batch(2))


def test_cli_pack_inspect_and_to_onnx_read_it(make_run, tmp_path: Path) -> None:
    run = make_run()
    res = invoke("pack", str(run), "--format", "safetensors", "--json")
    assert res.exit_code == 0, res.output
    out = Path(json.loads(res.stdout)["output"])
    assert out.name == "checkpoint.safetensors" and formats.detect_file(out)[1].name == "safetensors"
    res = invoke("inspect", str(out), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["format"] == "safetensors", res.output
    res = invoke("to-onnx", str(out), "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 0, res.output
    res = invoke("pack", str(run), "--format", "safetensors", "--encoding", "rans", "--force")
    assert_refused(res, match="takes weights and metadata only")


def test_verify_reads_it_against_the_packed_reference(tmp_path: Path) -> None:
    from binexport import verify
    from binexport.data.synth import write_cifar_testset

    model = tiny_model(8, 1, num_classes=10, seed=2)
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    write_cifar_testset(tmp_path / "data", images, np.arange(20) % 10, dataset="CIFAR10")
    ref = tmp_path / "m.packed.pth.tar"
    ref.write_bytes(formats.get("packed").write(model))
    r = verify([_write(tmp_path, model)], reference=ref, dataset="CIFAR10", data_root=tmp_path / "data", device="cpu")
    row = r.artifacts[0]
    assert r.passed and row.agreement == 1.0 and row.max_abs_logit_diff == 0.0


# ---- lying files: each is one line on stderr and exit 2 ----


def _parts(model: Model) -> tuple[dict, bytes]:
    data = st.write(model)
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _file(header: dict | bytes, body: bytes, length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def _edit(fn):
    def make(model: Model) -> bytes:
        header, body = _parts(model)
        out = fn(header, body)
        return out if isinstance(out, bytes) else _file(header, body)

    return make


def _first(header: dict) -> dict:
    return header["conv0"]


def _overlap(h: dict, b: bytes) -> None:
    e = sorted((v["data_offsets"], k) for k, v in h.items() if k != "__metadata__")
    h[e[1][1]]["data_offsets"] = [e[0][0][0] + 4, e[0][0][0] + 4 + e[1][0][1] - e[1][0][0]]


HOSTILE = {
    "offsets lie": (_edit(lambda h, b: _first(h).update(data_offsets=[0, 8])), "needs"),
    "overlap": (_edit(_overlap), "overlaps"),
    "runs past the file": (_edit(lambda h, b: _file(h, b[:-100])), "outside"),
    "header length past the file": (
        _edit(lambda h, b: _file(h, b, length=len(json.dumps(h)) + len(b) + 1)),
        "header length",
    ),
    "header length over the cap": (
        lambda m: struct.pack("<Q", st.MAX_HEADER + 8) + b"{" + b" " * (st.MAX_HEADER + 8),
        "at most",
    ),
    "bad dtype": (_edit(lambda h, b: _first(h).update(dtype="F8_E4M3")), "dtype"),
    "bad JSON": (_edit(lambda h, b: _file(json.dumps(h).encode()[:-2] + b"  ", b)), "not valid JSON"),
    "duplicate keys": (
        _edit(
            lambda h, b: _file(json.dumps(h).encode()[:-1] + b',"conv0":' + json.dumps(_first(h)).encode() + b"}", b)
        ),
        "twice",
    ),
    "huge shape": (_edit(lambda h, b: _first(h).update(shape=[1 << 40, 1 << 40])), "shape"),
    "shape product overflow": (_edit(lambda h, b: _first(h).update(shape=[len(b)] * 8)), "needs"),
    "trailing bytes": (_edit(lambda h, b: _file(h, b + b"\0" * 8)), "trailing"),
    "non-string metadata": (_edit(lambda h, b: h["__metadata__"].update(zero_weights=0)), "strings to strings"),
    "not binexport's": (_edit(lambda h, b: h["__metadata__"].pop("format")), "without binexport's metadata"),
    "padding bits set": (_edit(lambda h, b: _file(h, bytes(x | 1 for x in b))), "padding bits"),
    "negative offset": (_edit(lambda h, b: _first(h).update(data_offsets=[-4, 100])), "outside"),
    "NaN in JSON": (_edit(lambda h, b: _file(json.dumps(h).encode()[:-1] + b',"x":NaN}', b)), "not JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_lying_header_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    make, words = HOSTILE[case]
    p = tmp_path / "bad.safetensors"
    p.write_bytes(make(tiny_model(8, 0.25)))
    with pytest.raises(InputError, match=words):
        st.read(p)
    res = invoke("inspect", str(p))
    assert_refused(res)


def test_a_hole_between_tensors_is_refused(tmp_path: Path) -> None:
    header, body = _parts(tiny_model(8, 0.25))
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    b0, b1 = header[last]["data_offsets"]
    header[last]["data_offsets"] = [b0 + 8, b1 + 8]
    p = tmp_path / "hole.safetensors"
    p.write_bytes(_file(header, body[:b0] + b"\0" * 8 + body[b0:]))
    with pytest.raises(FormatError, match="belong to no tensor"):
        st.read(p)
