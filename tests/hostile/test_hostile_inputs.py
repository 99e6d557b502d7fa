"""Hostile torch files, option values, input and output paths: every one ends in exit 2 and one stderr line.

Issue 11, classes 1-6 (see tests/hostile/test_hostile_data.py for CIFAR, PNG, log.txt, ONNX and memory limits). Each
case id starts with its class. Files are tiny (WRN-8-1) so hundreds of cases run in seconds.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import invoke
from support.hostile import legacy_file, patch_central_sizes, state_pickle, tensor_entry, torch_zip, write, zip_bomb
from support.paths import REAL_PACKED
from support.refusals import assert_refused


@pytest.fixture(scope="module")
def kit(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's tiny training run, its state_dict and packed forms, an empty folder and a FIFO."""
    import torch

    from binexport import pack
    from binexport.data.synth import make_arch, random_state

    root = tmp_path_factory.mktemp("hostile")
    arch = make_arch(8, 1, 10)
    ckpt = tiny_run
    state = {"module." + k: torch.from_numpy(np.array(v)) for k, v in random_state(arch).items()}
    packed = root / "tiny.packed.pth.tar"
    pack(ckpt, packed)
    (root / "empty").mkdir()
    os.mkfifo(root / "fifo")
    _, w = os.pipe()  # a symlink to /proc/self/fd/W is a symlink to a pipe, like /proc/self/fd/1 in a shell
    os.symlink(f"/proc/self/fd/{w}", root / "to-stdout")
    return {
        "root": root,
        "ckpt": ckpt,
        "state": state,
        "packed": packed,
        "empty": root / "empty",
        "fifo": root / "fifo",
        "arch": arch,
    }


# --- class 1: objects weights_only admits that are not plain dense CPU tensors -----------------------------------

KEYS = ("module.conv0", "module.group0.block0.conv0", "module.bn.running_mean", "module.conv_last")


def _odd(kind: str, t: Any) -> Any:
    import torch

    if kind == "meta":
        return torch.empty(t.shape, device="meta")
    if kind == "sparse-coo":
        return t.to_sparse()
    if kind == "quantized":
        return torch.quantize_per_tensor(t.float(), 0.1, 0, torch.qint8)
    if kind == "non-contiguous":
        return t.transpose(0, -1) if t.dim() > 1 and t.shape[0] != t.shape[-1] else t.repeat(2)[::2]
    if kind == "zero-stride":
        return torch.zeros(1).expand(t.shape)
    if kind == "empty":
        return torch.zeros((0, *t.shape[1:]))
    if kind == "attributes":
        u = t.clone()
        u.numpy = 5  # rebuilt through _rebuild_from_type_v2 with state that sets it
        return u
    if kind == "subclass":
        globals().setdefault("Sub", type("Sub", (torch.Tensor,), {"__module__": __name__}))
        return t.as_subclass(globals()["Sub"])
    if kind.startswith("dtype-"):
        return t.to(getattr(torch, kind[6:]))
    return {"int": 3, "str": "w", "list": [t], "none": None, "dict": {"a": t}}[kind[4:]]


TENSOR_KINDS = (
    "meta",
    "sparse-coo",
    "quantized",
    "non-contiguous",
    "zero-stride",
    "empty",
    "attributes",
    "subclass",
    "dtype-int32",
    "dtype-bool",
    "dtype-complex64",
    "dtype-bfloat16",
    "dtype-int8",
    "dtype-int16",
    "not-int",
    "not-str",
    "not-list",
    "not-none",
    "not-dict",
)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("kind", TENSOR_KINDS)
def test_tensor_kind(kit: dict[str, Any], tmp_path: Path, kind: str, key: str, container: str) -> None:
    import torch

    state = dict(kit["state"])
    try:
        state[key] = _odd(kind, state[key])
        path = tmp_path / "odd.pth"
        torch.save(state, path, _use_new_zipfile_serialization=container == "zip")
    except (RuntimeError, TypeError, NotImplementedError, AttributeError) as e:
        pytest.skip(f"torch can't save it: {e}")
    assert_refused(invoke("inspect", path))


# --- class 2: declared sizes beyond the file ----------------------------------------------------------------------

F4 = b"\0" * 16


def _zip(
    numel: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    storage: str = "FloatStorage",
    record: bytes = F4,
    offset: int = 0,
    key: str = "0",
    records: dict[str, bytes] | None = None,
) -> bytes:
    pkl = state_pickle([tensor_entry("conv0", key, numel, size, stride, storage, offset)])
    return torch_zip(pkl, {"0": record} if records is None else records)


def _legacy(numel: int, storage: str = "FloatStorage", data: bytes = b"") -> bytes:
    return legacy_file(state_pickle([tensor_entry("conv0", "k", numel, (4,), (1,), storage, legacy=True)]), ["k"], data)


DECLARED: dict[str, Callable[[], bytes]] = {
    "zip-300MB-bytes-in-1KB": lambda: _zip(300_000_000, (300_000_000,), (1,), "ByteStorage"),
    "zip-2^40-floats": lambda: _zip(2**40, (2**40,), (1,)),
    "zip-10^18-longs": lambda: _zip(10**18, (4,), (1,), "LongStorage"),
    "zip-2^100-elements": lambda: _zip(2**100, (4,), (1,)),
    "zip-negative-numel": lambda: _zip(-1, (4,), (1,)),
    "zip-size-beyond-storage": lambda: _zip(4, (10**9,), (1,)),
    "zip-zero-stride-300M": lambda: _zip(1, (300_000_000,), (0,)),
    "zip-offset-beyond-storage": lambda: _zip(4, (4,), (1,), offset=10**12),
    "zip-negative-size": lambda: _zip(4, (-4,), (1,)),
    "zip-missing-record": lambda: _zip(4, (4,), (1,), records={}),
    "zip-foreign-storage-type": lambda: _zip(4, (4,), (1,), "FancyStorage"),
    "zip-deflated-members": lambda: torch_zip(
        state_pickle([tensor_entry("conv0", "0", 4, (4,), (1,))]), {"0": F4}, zipfile.ZIP_DEFLATED
    ),
    "zip-bomb-5GiB-data.pkl": lambda: zip_bomb(5 << 30),
    "zip-central-size-lies": lambda: patch_central_sizes(_zip(4, (4,), (1,)), "archive/data/0", 300_000_000),
    "zip-data.pkl-size-lies": lambda: patch_central_sizes(_zip(4, (4,), (1,)), "archive/data.pkl", 2**31),
    "zip-no-data.pkl": lambda: torch_zip(b"", {}).replace(b"archive/data.pkl", b"archive/datX.pkl"),
    "legacy-300GB-floats": lambda: _legacy(75 * 10**9),
    "legacy-2^62-longs": lambda: _legacy(2**62, "LongStorage"),
    "legacy-1MB-in-a-tiny-file": lambda: _legacy(2**18),
    "legacy-data-short": lambda: _legacy(4, data=struct.pack("<q", 4) + b"\0" * 8),
    "legacy-count-lies": lambda: _legacy(4, data=struct.pack("<q", 2**40) + b"\0" * 16),
    "legacy-no-magic": lambda: b"\x80\x02K\x01." + b"\0" * 64,
    "legacy-object-pickle-only": lambda: legacy_file(b"\x80\x02]q\x00(" + b"K\x01" * 1000 + b"e.", []),
}


@pytest.mark.parametrize("case", list(DECLARED))
def test_declared_size(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "declared.pth.tar", DECLARED[case]())
    assert_refused(invoke("inspect", path))


# --- class 3: exceptions readers don't expect: bit flips, truncations ------------------------------------------------


def _pickle_span(data: bytes) -> tuple[int, int]:
    if data.startswith(b"PK"):
        info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]  # data.pkl comes first
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        return start, start + info.compress_size
    return 0, min(len(data), 4096)


def _flip_case(kind: str, i: int) -> str:
    return f"{kind}-{i}"


FLIPS = (
    [_flip_case("zip", i) for i in range(24)]
    + [_flip_case("legacy", i) for i in range(12)]
    + [_flip_case("real-packed", i) for i in range(12)]
    + [_flip_case("truncated", i) for i in range(8)]
)


@pytest.mark.parametrize("case", FLIPS)
def test_bit_flip(kit: dict[str, Any], tmp_path: Path, case: str) -> None:
    """A flipped bit in the pickle (torch raises AssertionError for ~1 in 4) or a cut file: never a traceback.

    Read through ``verify`` with an empty image folder, so even a file that still loads ends in exit 2.
    """
    kind, i = case.rsplit("-", 1)
    rng = random.Random(f"{case}")
    if kind == "real-packed":
        if not REAL_PACKED.is_file():
            pytest.skip("real published checkpoint absent")
        data = bytearray(REAL_PACKED.read_bytes())
    elif kind == "legacy":
        import torch

        buf = io.BytesIO()
        torch.save(kit["state"], buf, _use_new_zipfile_serialization=False)
        data = bytearray(buf.getvalue())
    else:
        data = bytearray(kit["packed"].read_bytes())
    if kind == "truncated":
        data = data[: int(len(data) * (int(i) + 1) / 9)]
    else:
        start, end = _pickle_span(bytes(data))
        pos = rng.randrange(start, end)
        data[pos] ^= 1 << rng.randrange(8)
    path = write(tmp_path / "flipped.pth.tar", bytes(data))
    assert_refused(invoke("verify", path, "--images", kit["empty"]))


# --- class 4: option values nobody validated --------------------------------------------------------------------

OPTIONS: dict[str, list[str]] = {
    "pack-empty-path": ["pack", ""],
    "pack-empty-output": ["pack", "{ckpt}", "-o", ""],
    "inspect-empty-path": ["inspect", ""],
    "verify-empty-artifact": ["verify", "", "--images", "{empty}"],
    "to-onnx-empty-images": ["to-onnx", "{ckpt}", "--images", ""],
    "pack-unknown-format": ["pack", "{ckpt}", "--format", "onnx"],
    "pack-bad-meta": ["pack", "{ckpt}", "--format", "bwn", "--meta", "=x"],
    "pack-unknown-option": ["pack", "{ckpt}", "--frobnicate"],
    "unknown-command": ["frobnicate"],
    "missing-argument": ["inspect"],
    **{
        f"to-onnx-batch-{v}": ["to-onnx", "{ckpt}", "--batch", v]
        for v in ("99999999999999999999", "10000000", "4097", "0", "-1", "1e3", "abc", "", "8.5", "٣", "²", "nan")
    },
    **{
        f"to-onnx-opset-{v}": ["to-onnx", "{ckpt}", "--opset", v]
        for v in ("99999999999999999999", "0", "-5", "12", "abc", "1e3")
    },
    "to-onnx-weights-unknown": ["to-onnx", "{ckpt}", "--weights", "int3"],
    **{
        f"demo-width-{v}": ["demo", "--width", v, "--out", "{root}/demo"]
        for v in ("0", "nan", "inf", "-inf", "-1", "1e9", "0.3", "abc", "", "17")
    },
    **{
        f"verify-batch-size-{v}": ["verify", "{ckpt}", "--images", "{empty}", "--batch-size", v]
        for v in ("0", "-1", "99999999999999999999", "abc", "4097")
    },
    "verify-limit-0": ["verify", "{ckpt}", "--images", "{empty}", "--limit", "0"],
    "verify-no-data": ["verify", "{ckpt}"],
    "verify-both-data": ["verify", "{ckpt}", "--images", "{empty}", "--dataset", "CIFAR10"],
    "verify-dataset-unknown": ["verify", "{ckpt}", "--dataset", "MNIST"],
    "verify-device-unknown": ["verify", "{ckpt}", "--device", "tpu", "--images", "{empty}"],
    **{f"bench-seconds-{v}": ["bench", "{ckpt}", "--seconds", v] for v in ("nan", "inf", "0", "-1", "1e9")},
    **{f"bench-batch-size-{v}": ["bench", "{ckpt}", "--batch-size", v] for v in ("0", "99999")},
    "bench-threads--1": ["bench", "{ckpt}", "--threads", "-1"],
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_option(kit: dict[str, Any], case: str) -> None:
    args = [a.format(**{k: str(v) for k, v in kit.items() if isinstance(v, Path)}) for a in OPTIONS[case]]
    assert_refused(invoke(*args))


def _zero_model(tmp_path: Path, width: int, classes: int) -> Path:
    import torch

    from binexport.model import Arch

    arch = object.__new__(Arch)  # Arch refuses these shapes; a stranger's file is not built through it
    object.__setattr__(arch, "depth", 8)
    object.__setattr__(arch, "widths", (width, 2 * width, 4 * width))
    object.__setattr__(arch, "num_classes", classes)
    state = {
        "module." + s.name: torch.zeros(s.shape, dtype=torch.int64 if s.name.endswith("tracked") else torch.float32)
        for s in arch.specs()
    }
    path = tmp_path / f"wrn8-{width}-{classes}.pth.tar"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("verb", ["inspect", "pack", "to-onnx"])
@pytest.mark.parametrize("shape", ["WRN-8-0", "0-classes"])
def test_empty_model(tmp_path: Path, verb: str, shape: str) -> None:
    path = _zero_model(tmp_path, 0 if shape == "WRN-8-0" else 16, 10 if shape == "WRN-8-0" else 0)
    assert_refused(invoke(verb, path, "--binarized"))


# --- class 5: non-regular inputs and outputs ----------------------------------------------------------------------

OUTPUTS: dict[str, list[str]] = {
    "pack-o-fifo": ["pack", "{ckpt}", "-o", "{fifo}", "--force"],
    "pack-o-dev-null": ["pack", "{ckpt}", "-o", "/dev/null", "--force"],
    "pack-o-link-to-stdout": ["pack", "{ckpt}", "-o", "{root}/to-stdout", "--force"],
    "pack-o-link-to-fifo": ["pack", "{ckpt}", "-o", "{root}/to-fifo", "--force"],
    "pack-o-directory": ["pack", "{ckpt}", "-o", "{empty}", "--force"],
    "pack-o-missing-folder": ["pack", "{ckpt}", "-o", "{root}/nope/x.pth.tar"],
    "pack-o-exists": ["pack", "{ckpt}", "-o", "{ckpt}"],
    "to-onnx-o-dev-null": ["to-onnx", "{ckpt}", "-o", "/dev/null", "--force"],
    "verify-json-fifo": ["verify", "{ckpt}", "--images", "{empty}", "--json-out", "{fifo}"],
    "verify-json-dev-null": ["verify", "{ckpt}", "--images", "{empty}", "--json-out", "/dev/null"],
    "verify-json-link-to-stdout": ["verify", "{ckpt}", "--images", "{empty}", "--json-out", "{root}/to-stdout"],
    "verify-json-link-to-dev-null": ["verify", "{ckpt}", "--images", "{empty}", "--json-out", "{root}/to-null"],
    "bench-json-fifo": ["bench", "{ckpt}", "--json-out", "{fifo}"],
    "verify-old-json-spelling-fifo": ["verify", "{ckpt}", "--images", "{empty}", "--json", "{fifo}"],
    "bench-old-json-spelling-dev-null": ["bench", "{ckpt}", "--json", "/dev/null"],
    "inspect-fifo": ["inspect", "{fifo}"],
    "inspect-dev-null": ["inspect", "/dev/null"],
    "inspect-dev-zero": ["inspect", "/dev/zero"],
    "inspect-directory": ["inspect", "{empty}"],
    "inspect-missing": ["inspect", "{root}/missing.pth"],
    "inspect-newline-in-name": ["inspect", "{root}/a\nb\r.pth"],
    "inspect-non-utf8-missing": ["inspect", "{root}/bad\udcffname.pth"],
    "inspect-link-loop": ["inspect", "{root}/loop"],
    "inspect-empty-file": ["inspect", "{root}/empty.pth"],
    "verify-reference-fifo": ["verify", "{ckpt}", "--reference", "{fifo}", "--images", "{empty}"],
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_special_path(kit: dict[str, Any], case: str) -> None:
    root = kit["root"]
    for name, target in (("to-fifo", str(kit["fifo"])), ("to-null", "/dev/null"), ("loop", str(root / "loop"))):
        if not os.path.lexists(root / name):
            os.symlink(target, root / name)
    (root / "empty.pth").touch()
    args = [a.format(**{k: str(v) for k, v in kit.items() if isinstance(v, Path)}) for a in OUTPUTS[case]]
    err = assert_refused(invoke(*args))
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert "\r" not in err
