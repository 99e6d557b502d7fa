"""Hostile CIFAR pickles, PNG folders, log.txt files and ONNX graphs, and the memory-bounded cases.

Issue 11, classes 2, 3, 7 and 8 for the data readers. Every case ends in exit 2 with one stderr line; the
cases that would allocate gigabytes run in one subprocess under RLIMIT_AS = 4 GiB.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import Ran, invoke
from support.hostile import good_png, onnx_graph, p_global, p_int, p_str, png, write
from support.models import planar
from support.paths import TESTS, pythonpath
from support.refusals import assert_refused


@pytest.fixture(scope="module")
def kit(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile-data")
    ckpt = tiny_run
    imgs = root / "imgs"
    for i in range(4):
        write(imgs / f"a_{i}.png", good_png(i))
    return {"root": root, "ckpt": ckpt, "imgs": imgs}


# --- CIFAR pickles (read by verify --dataset CIFAR10) --------------------------------------------------------------

IMAGES = np.zeros((2, 32, 32, 3), np.uint8)


def _batch(labels: Any = (1, 2), data: Any = None, proto: int = 2, **extra: Any) -> bytes:
    return pickle.dumps(
        {
            b"labels": list(labels) if isinstance(labels, tuple) else labels,
            b"data": planar(IMAGES) if data is None else data,
            **extra,
        },
        protocol=proto,
    )


def _ops(body: bytes) -> bytes:
    return b"\x80\x02}(" + p_str("labels") + b"]K\x01a" + p_str("data") + body + b"u."


CIFAR: dict[str, Callable[[], bytes]] = {
    "ndarray-call-100k-images": lambda: _ops(
        p_global("numpy", "ndarray") + b"(" + p_int(100_000) + p_int(3072) + b"t" + p_str("u1") + b"\x86R"
    ),
    "reconstruct-huge-shape": lambda: _ops(
        p_global("numpy.core.multiarray", "_reconstruct")
        + p_global("numpy", "ndarray")
        + b"("
        + p_int(10**9)
        + b"t"
        + b"C\x01b"
        + b"\x87R"
    ),
    "label-beyond-int64": lambda: _batch((2**70, 1)),
    "label-negative": lambda: _batch((-1, 1)),
    "label-too-large": lambda: _batch((10, 1)),
    "label-str": lambda: _batch(("1", "2")),
    "label-float": lambda: _batch((1.0, 2.0)),
    "label-bool": lambda: _batch((True, False)),
    "labels-missing": lambda: pickle.dumps({b"data": planar(IMAGES)}),
    "labels-count": lambda: _batch((1, 2, 3)),
    "data-uint16": lambda: _batch(data=planar(IMAGES).astype(np.uint16)),
    "data-shape": lambda: _batch(data=np.zeros((2, 3071), np.uint8)),
    "data-object": lambda: _batch(data=np.array([b"x", 1], dtype=object)),
    "data-list": lambda: _batch(data=[1, 2]),
    "not-a-dict": lambda: pickle.dumps([1, 2, 3]),
    "codecs-rot13": lambda: _ops(p_global("_codecs", "encode") + b"(" + p_str("abc") + p_str("rot13") + b"tR"),
    "codecs-utf16": lambda: _ops(p_global("_codecs", "encode") + b"(" + p_str("abc") + p_str("utf-16") + b"tR"),
    "codecs-bytes-arg": lambda: _ops(p_global("_codecs", "encode") + b"(C\x01a" + p_str("latin1") + b"tR"),
    "codecs-decode": lambda: _ops(p_global("_codecs", "decode") + b"(C\x01a" + p_str("latin1") + b"tR"),
    "os-system": lambda: _ops(p_global("os", "system") + b"(" + p_str("true") + b"tR"),
    "builtins-eval": lambda: _ops(p_global("builtins", "eval") + b"(" + p_str("1") + b"tR"),
    "numpy-load": lambda: _ops(p_global("numpy", "load") + b"(" + p_str("/etc/passwd") + b"tR"),
    "dtype-object": lambda: _ops(p_global("numpy", "dtype") + b"(" + p_str("O8") + b"tR"),
    "persistent-id": lambda: _ops(p_str("x") + b"P"),
    "unicode-4GB-declared": lambda: b"\x80\x02X\xff\xff\xff\xffabc",
    "long4-declared": lambda: b"\x80\x02\x8b\xff\xff\xff\x7f\x00",
    "empty-file": lambda: b"",
    "random-bytes": lambda: random.Random(1).randbytes(4096),
    "deep-lists": lambda: b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".",
    **{f"truncated-{i}": (lambda i=i: _batch()[: int(len(_batch()) * i / 10)]) for i in range(1, 10)},
    **{f"bit-flip-{i}": (lambda i=i: _flip(_batch(proto=2), i)) for i in range(24)},
}


def _flip(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    head = min(len(out), 400)  # the structure, not the pixel bytes (which any value may take)
    out[rng.randrange(head)] ^= 1 << rng.randrange(8)
    return bytes(out)


@pytest.mark.parametrize("case", list(CIFAR))
def test_cifar(kit: dict[str, Any], tmp_path: Path, case: str) -> None:
    write(tmp_path / "cifar-10-batches-py" / "test_batch", CIFAR[case]())
    result = invoke("verify", kit["ckpt"], "--dataset", "CIFAR10", "--data-root", tmp_path)
    if result.exit_code == 0 and case.startswith("bit-flip"):
        return  # a flip in a key or label byte can leave a valid file
    assert_refused(result)


@pytest.mark.parametrize("proto", [0, 1, 2])
def test_cifar_repickled_by_python3_loads(kit: dict[str, Any], tmp_path: Path, proto: int) -> None:
    """Protocols 0-2 hold bytes as _codecs.encode(str, 'latin1'): allowed in exactly that form, and every pixel
    and label comes back as written (a latin-1 round trip that mangled a byte would show here)."""
    from binexport.data.cifar import load_cifar

    images = np.random.default_rng(proto).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    write(tmp_path / "cifar-10-batches-py" / "test_batch", _batch(labels=(7, 2), data=planar(images), proto=proto))
    loaded = load_cifar("CIFAR10", tmp_path)
    assert np.array_equal(loaded.images, images) and list(loaded.labels) == [7, 2]
    result = invoke("verify", kit["ckpt"], "--dataset", "CIFAR10", "--data-root", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_images"] == 2


# --- PNG folders (verify --images) -------------------------------------------------------------------------------

PNGS: dict[str, Callable[[Path], None]] = {
    "4096x4096-header": lambda d: write(d / "a_1.png", png(4096, 4096, ftype=4)) and None,
    "33x32": lambda d: write(d / "a_1.png", png(33, 32)) and None,
    "0x0": lambda d: write(d / "a_1.png", png(0, 0)) and None,
    "depth-16": lambda d: write(d / "a_1.png", png(depth=16)) and None,
    "palette": lambda d: write(d / "a_1.png", png(colour=3)) and None,
    "interlaced": lambda d: write(d / "a_1.png", png(interlace=1)) and None,
    "idat-truncated": lambda d: write(d / "a_1.png", png(idat=zlib.compress(bytes(100)))) and None,
    "idat-not-zlib": lambda d: write(d / "a_1.png", png(idat=b"garbage")) and None,
    "filter-type-7": lambda d: write(d / "a_1.png", png(ftype=7)) and None,
    "empty-file": lambda d: write(d / "a_1.png", b"") and None,
    "not-a-png": lambda d: write(d / "a_1.png", b"GIF89a" + bytes(100)) and None,
    "ihdr-not-first": lambda d: write(d / "a_1.png", png()[:8] + png()[33:]) and None,
    "ihdr-5-bytes": lambda d: write(d / "a_1.png", png()[:8] + b"\0\0\0\x05IHDR" + bytes(9)) and None,
    "label-20-digits": lambda d: write(d / "a_99999999999999999999999.png", good_png()) and None,
    "label-superscript-folder": lambda d: write(d / "\u00b2" / "x.png", good_png()) and None,
    "label-arabic-digit-folder": lambda d: write(d / "\u0663" / "x.png", good_png()) and None,
    "label-out-of-range": lambda d: write(d / "a_123456789.png", good_png()) and None,
    "no-label": lambda d: write(d / "cat.png", good_png()) and None,
    "folder-named-png": lambda d: (d / "x_1.png").mkdir(parents=True),
    "fifo-named-png": lambda d: (d.mkdir(parents=True), os.mkfifo(d / "a_1.png")) and None,
    "link-to-dev-zero": lambda d: (d.mkdir(parents=True), os.symlink("/dev/zero", d / "a_1.png")) and None,
    "17MiB-png": lambda d: (write(d / "a_1.png", good_png()), os.truncate(d / "a_1.png", 17 << 20)) and None,
    "empty-folder": lambda d: d.mkdir(parents=True),
    "newline-in-name": lambda d: write(d / "a\nb_1.png", b"junk") and None,
}


@pytest.mark.parametrize("case", list(PNGS))
def test_png_folder(kit: dict[str, Any], tmp_path: Path, case: str) -> None:
    PNGS[case](tmp_path / "imgs")
    assert_refused(invoke("verify", kit["ckpt"], "--images", tmp_path / "imgs"))


# --- log.txt beside a checkpoint (pack needs to know whether it was binarised) -------------------------------------

LOGS: dict[str, Callable[[Path], None]] = {
    "sparse-6GB": lambda p: (p.touch(), os.truncate(p, 6 << 30)) and None,
    "deep-json": lambda p: p.write_text("{" + '"a":[' * 100_000 + "]" * 100_000 + "}\n") and None,
    "one-10MB-line": lambda p: p.write_text("{" + " " * (10 << 20) + '"binarize": true}') and None,
    "binary-garbage": lambda p: p.write_bytes(random.Random(2).randbytes(8192)) and None,
    "disagreeing": lambda p: p.write_text('{"binarize": true}\n{"binarize": false}\n') and None,
    "binarize-as-string": lambda p: p.write_text('{"binarize": "yes"}\n') and None,
    "a-directory": lambda p: p.mkdir() and None,
    "a-fifo": lambda p: os.mkfifo(p),
    "link-to-dev-zero": lambda p: os.symlink("/dev/zero", p),
    "nan-and-huge-numbers": lambda p: p.write_text('{"binarize": NaN, "x": 1e999999}\n') and None,
}


@pytest.mark.parametrize("case", list(LOGS))
def test_log_txt(kit: dict[str, Any], tmp_path: Path, case: str) -> None:
    ckpt = tmp_path / "checkpoint.pth.tar"
    ckpt.write_bytes(kit["ckpt"].read_bytes())
    LOGS[case](tmp_path / "log.txt")
    assert_refused(invoke("pack", ckpt, "-o", tmp_path / "out.pth.tar"))


# --- ONNX files given to verify and bench ----------------------------------------------------------------------

ONNX_KINDS = (
    "no-input",
    "two-inputs",
    "rank-2",
    "huge-fixed-batch",
    "string-input",
    "bad-metadata",
    "wrong-classes",
    "int-output-wrong-shape",
    "garbage-with-onnx-magic",
    "truncated",
)


def _onnx(kind: str) -> bytes:
    if kind == "garbage-with-onnx-magic":
        return b"\x08\x08\x12" + random.Random(3).randbytes(2000)
    if kind == "truncated":
        return onnx_graph("plain")[:60]
    return onnx_graph(kind)


@pytest.mark.parametrize("kind", ONNX_KINDS)
def test_onnx_to_verify(kit: dict[str, Any], tmp_path: Path, kind: str) -> None:
    path = write(tmp_path / "model.onnx", _onnx(kind))
    result = invoke("verify", path, "--reference", kit["ckpt"], "--images", kit["imgs"])
    err = assert_refused(result)
    assert "onnxruntime" not in err.split("error:", 1)[0]


@pytest.mark.parametrize("kind", ["no-input", "huge-fixed-batch", "garbage-with-onnx-magic"])
def test_onnx_to_bench(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path / "model.onnx", _onnx(kind))
    assert_refused(invoke("bench", path, "--seconds", "0.1", "--device", "cpu"))


# --- memory-bounded: what would allocate gigabytes, under RLIMIT_AS = 4 GiB in one subprocess -------------------

MEMORY_SCRIPT = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
sys.path.insert(0, sys.argv[2])
from support.cli import invoke
out = {}
for name, args in json.loads(sys.argv[1]).items():
    r = invoke(*args)
    out[name] = [r.exit_code, r.stderr, repr(r.exception) if r.exit_code not in (0, 2) else ""]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def memory_results(kit: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    import sys as _sys

    from support.hostile import legacy_file, state_pickle, tensor_entry, torch_zip, zip_bomb

    d = tmp_path_factory.mktemp("memory")
    files = {
        "zip-300MB-declared": torch_zip(
            state_pickle([tensor_entry("conv0", "0", 300_000_000, (300_000_000,), (1,), "ByteStorage")]),
            {"0": b"\0" * 4},
        ),
        "legacy-300GB-declared": legacy_file(
            state_pickle([tensor_entry("conv0", "k", 75 * 10**9, (4,), (1,), legacy=True)]), ["k"]
        ),
        "zip-bomb-5GiB": zip_bomb(5 << 30),
    }
    cases = {name: ["inspect", str(write(d / f"{name}.pth", data))] for name, data in files.items()}
    cifar = d / "cifar" / "cifar-10-batches-py" / "test_batch"
    write(cifar, CIFAR["ndarray-call-100k-images"]())
    cases["cifar-100k-images-declared"] = [
        "verify",
        str(kit["ckpt"]),
        "--dataset",
        "CIFAR10",
        "--data-root",
        str(d / "cifar"),
    ]
    write(d / "png" / "a_1.png", png(4096, 4096, ftype=4))
    cases["png-4096x4096"] = ["verify", str(kit["ckpt"]), "--images", str(d / "png")]
    run = d / "run"
    run.mkdir()
    (run / "checkpoint.pth.tar").write_bytes(kit["ckpt"].read_bytes())
    with open(run / "log.txt", "wb") as f:
        f.truncate(6 << 30)
    cases["log-6GB-sparse"] = ["pack", str(run / "checkpoint.pth.tar"), "-o", str(d / "o.pth.tar")]
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath(),
    }
    proc = subprocess.run(
        [_sys.executable, "-c", MEMORY_SCRIPT, json.dumps(cases), str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "case",
    [
        "zip-300MB-declared",
        "legacy-300GB-declared",
        "zip-bomb-5GiB",
        "cifar-100k-images-declared",
        "png-4096x4096",
        "log-6GB-sparse",
    ],
)
def test_memory_bounded(memory_results: dict[str, list[Any]], case: str) -> None:
    code, stderr, exc = memory_results[case]
    assert exc is None or not exc, exc
    assert_refused(Ran(code, "", stderr))
