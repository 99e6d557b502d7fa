"""Hardening round 3, the newest readers: ``.pth.zip`` wrappers, pytorchcv state_dicts, run folders for bench, a
broken OpenVINO install, and PNG-folder calibration that decodes only what it uses.

Every bad input ends in one stderr line and exit 2 (no traceback); the zip wrapper also gets a seeded fuzzer.
A broken OpenVINO is a fake ``openvino`` package put first on PYTHONPATH of a ``binexport`` subprocess.
"""

from __future__ import annotations

import io
import json
import random
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.cli import Ran, invoke, run_cli
from support.hostile import good_png, png, write
from support.refusals import assert_refused

import binexport
from binexport.errors import InputError, MissingExtraError

# --- class 1: zip members zipfile / zlib can't read ------------------------------------------------------------


def _torch_bytes(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _wrapper(member: bytes, method: int, name: str = "m.pth") -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr(name, member)
    return bytearray(buf.getvalue())


def _central(raw: bytearray) -> int:
    return raw.rfind(b"PK\x01\x02")


def _encrypted(raw: bytearray) -> bytearray:
    raw[6] |= 1  # general purpose flag bit 0, local header and central directory
    raw[_central(raw) + 8] |= 1
    return raw


def _version(raw: bytearray) -> bytearray:
    raw[_central(raw) + 6] = 99  # "version needed to extract" 9.9
    return raw


def _corrupt_deflate(raw: bytearray) -> bytearray:
    raw[30 + 5] ^= 0xFF  # the first bytes of the member's data (local header 30 + name 5): its block header
    return raw


def _bad_crc(raw: bytearray) -> bytearray:
    raw[_central(raw) + 16] ^= 0xFF
    raw[14] ^= 0xFF
    return raw


def _truncated(raw: bytearray) -> bytearray:
    return raw[: len(raw) // 2]


ZIP_CASES = {
    "encrypted-stored": (0, _encrypted, "is encrypted"),
    "encrypted-deflated": (8, _encrypted, "is encrypted"),
    "version-9.9": (8, _version, "zip file version 9.9"),
    "corrupt-deflate": (8, _corrupt_deflate, "deflate stream is corrupt"),
    "bad-crc": (0, _bad_crc, "Bad CRC-32"),
    "truncated": (8, _truncated, "truncated or corrupt"),
}


@pytest.fixture(scope="module")
def wrn_pth() -> bytes:
    import torch
    from support.models import tiny_model

    return _torch_bytes({k: torch.from_numpy(v.copy()) for k, v in tiny_model(binarized=False).floats.items()})


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pngs")
    for i in range(4):
        write(d / f"img{i}_{i}.png", good_png(i))
    return d


@pytest.mark.parametrize("verb", ["inspect", "pack", "to-onnx", "verify"])
@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_a_zip_member_zipfile_cant_read_is_one_line_naming_file_and_member(
    tmp_path: Path, wrn_pth: bytes, png_folder: Path, case: str, verb: str
) -> None:
    method, edit, msg = ZIP_CASES[case]
    z = write(tmp_path / "w.pth.zip", bytes(edit(_wrapper(wrn_pth, method))))
    extra = ["--images", png_folder, "--device", "cpu"] if verb == "verify" else []
    err = assert_refused(invoke(verb, z, "--full-precision", *extra))
    assert str(z) in err and "zip member 'm.pth'" in err and msg in err, err


def test_an_encrypted_torch_save_zip_is_one_line(tmp_path: Path) -> None:
    """torch.save's own zip (not a wrapper) with its data.pkl flagged encrypted: the scan names it, exit 2."""
    raw = bytearray(_torch_bytes({"a": np.zeros(4, np.float32)}))
    raw[6] |= 1
    cd = raw.find(b"PK\x01\x02")
    raw[cd + 8] |= 1
    err = assert_refused(invoke("inspect", write(tmp_path / "t.pth", bytes(raw)), "--full-precision"))
    assert "encrypted" in err


def _mutate(raw: bytearray, rng: random.Random) -> bytearray:
    """One seeded mutation, aimed where zip readers decide things: headers, sizes, flags, the stream, the end."""
    cd = _central(raw)
    kind = rng.randrange(7)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif kind == 1:  # local header: version, flags, method, time, crc, sizes, name length
        for off in rng.sample([4, 5, 6, 7, 8, 9, 14, 18, 22, 26, 27, 28], rng.randint(1, 3)):
            raw[off] = rng.randrange(256)
    elif kind == 2 and cd > 0:  # central directory: versions, flags, method, crc, sizes, lengths, offset
        for off in rng.sample([4, 5, 6, 7, 8, 9, 10, 11, 16, 20, 24, 28, 30, 32, 42], rng.randint(1, 3)):
            raw[cd + off] = rng.randrange(256)
    elif kind == 3:
        raw = raw[: rng.randrange(len(raw))]
    elif kind == 4:
        raw = _encrypted(raw) if cd > 0 else raw
    elif kind == 5:  # a bit of the member's data (the deflate stream, or the stored torch file)
        p = rng.randrange(35, max(36, cd - 1))
        raw[p] ^= 1 << rng.randrange(8)
    else:  # the end-of-central-directory record
        end = raw.rfind(b"PK\x05\x06")
        for off in rng.sample(range(4, 22), rng.randint(1, 3)):
            raw[end + off] = rng.randrange(256)
    return raw


def test_seeded_zip_mutants_end_in_one_line(tmp_path: Path) -> None:
    """300 mutants of stored and deflated wrappers and of torch.save's own zip: exit 2, one line, every time.

    The member is a small torch file (not a WRN), so every mutant, valid zip or not, must be refused.
    """
    member = _torch_bytes({"w": np.arange(64, dtype=np.float32).reshape(4, 16)})
    bases = [_wrapper(member, 0), _wrapper(member, 8), bytearray(member)]
    rng = random.Random(22)
    path = tmp_path / "m.pth.zip"
    for i in range(300):
        raw = _mutate(bytearray(bases[i % 3]), rng)
        path.write_bytes(bytes(raw))
        r = invoke("inspect", path, "--full-precision")
        try:
            assert_refused(r)
        except AssertionError as e:
            raise AssertionError(f"mutant {i}: {e}") from None


# --- class 2: pytorchcv state_dicts with non-float or non-finite values ----------------------------------------


def _pytorchcv_state(edit) -> dict:
    wrn1bit = pytest.importorskip("pytorchcv.models.wrn1bit_cifar", reason="pytorchcv is absent")
    import torch

    torch.manual_seed(0)
    net = wrn1bit.CIFARWRN1bit([[8, 8], [16, 16], [32, 32]], 8, binarized=True, num_classes=10)
    sd = net.state_dict()
    edit(sd, torch)
    return sd


CONV = "features.stage1.unit1.body.conv1.conv.weight"
BN_VAR = "features.stage2.unit1.body.conv2.bn.running_var"
PTCV_CASES = {
    "int64-conv": (lambda sd, t: sd.__setitem__(CONV, sd[CONV].round().to(t.int64)), CONV, "dtype int64"),
    "nan-conv": (lambda sd, t: sd[CONV].view(-1)[3].fill_(float("nan")), CONV, "1 NaN or infinite value"),
    "inf-bn": (lambda sd, t: sd[BN_VAR].fill_(float("inf")), BN_VAR, "NaN or infinite values"),
    "int32-stem": (
        lambda sd, t: sd.__setitem__("features.init_block.weight", sd["features.init_block.weight"].to(t.int32)),
        "features.init_block.weight",
        "dtype",
    ),
}


@pytest.mark.parametrize("verb", ["inspect", "to-onnx"])
@pytest.mark.parametrize("case", list(PTCV_CASES))
def test_pytorchcv_non_float_or_non_finite_weights_are_refused(tmp_path: Path, case: str, verb: str) -> None:
    import torch

    edit, key, msg = PTCV_CASES[case]
    path = tmp_path / "wrn14_1_32bit_cifar10-0000-00000000.pth"
    torch.save(_pytorchcv_state(edit), path)
    args = ["-o", tmp_path / "m.onnx"] if verb == "to-onnx" else []
    err = assert_refused(invoke(verb, path, "--full-precision", *args))
    assert repr(key) in err and msg in err, err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(InputError, match="pytorchcv"):
        binexport.load(path, binarized=True)


def test_pytorchcv_int64_counters_are_still_read(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "ok.pth"
    sd = _pytorchcv_state(lambda sd, t: None)
    assert any(v.dtype == torch.int64 for v in sd.values())  # num_batches_tracked
    torch.save(sd, path)
    assert binexport.load(path, binarized=True).arch.family == "pytorchcv"


# --- class 3: bench takes a training run folder like every other command ---------------------------------------


@pytest.mark.slow  # a torch worker: ~18 s on the loaded 2 cores
def test_bench_takes_a_run_folder(make_run, tmp_path: Path) -> None:
    ckpt = make_run()
    out = tmp_path / "b.json"
    r = invoke("bench", ckpt.parent, "--seconds", "0.2", "--device", "cpu", "--batch-size", "2", "--json-out", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["rows"][0]["path"] == str(ckpt)
    assert "a training run folder; using checkpoint.pth.tar" in r.stderr


def test_bench_refuses_an_ambiguous_folder_in_one_line(make_run) -> None:
    ckpt = make_run()
    ckpt.rename(ckpt.with_name("b.pth"))
    (ckpt.parent / "a.pth").write_bytes(ckpt.with_name("b.pth").read_bytes())
    err = assert_refused(invoke("bench", ckpt.parent, "--device", "cpu"))
    assert "a.pth, b.pth" in err


# --- class 9: a broken OpenVINO install ------------------------------------------------------------------------

FAKE_OPENVINO = {
    "raises": 'raise RuntimeError("libopenvino.so.2026: cannot open shared object file")\n',
    "no-core": "version = 'broken'\n",
}


@pytest.fixture(scope="module")
def onnx_and_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch
    from support.models import tiny_model

    d = tmp_path_factory.mktemp("ov")
    torch.save({k: torch.from_numpy(v.copy()) for k, v in tiny_model(binarized=False).floats.items()}, d / "m.pth")
    return binexport.export_onnx(d / "m.pth", d / "m.onnx", binarized=True).output, d / "m.pth"


def _cli_with_fake_openvino(tmp_path: Path, kind: str, *args: object) -> Ran:
    fake = tmp_path / "fake" / "openvino"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_OPENVINO[kind])
    return run_cli(*args, pythonpath_first=(fake.parent,))


@pytest.mark.parametrize("kind", list(FAKE_OPENVINO))
def test_a_broken_openvino_named_by_runtime_is_one_line_exit_2(
    tmp_path: Path, onnx_and_ckpt: tuple[Path, Path], kind: str
) -> None:
    onnx, _ = onnx_and_ckpt
    r = _cli_with_fake_openvino(tmp_path, kind, "bench", onnx, "--runtime", "openvino", "--seconds", "0.1")
    assert_refused(r, match=("OpenVINO is installed but", 'pip install --force-reinstall "binexport[openvino]"'))
    assert ("RuntimeError: libopenvino.so" if kind == "raises" else "has no Core") in r.stderr


def test_runtime_all_goes_on_without_a_broken_openvino_saying_so(
    tmp_path: Path, onnx_and_ckpt: tuple[Path, Path], png_folder: Path
) -> None:
    onnx, ckpt = onnx_and_ckpt
    out = tmp_path / "v.json"
    args = ["verify", ckpt, onnx, "--images", png_folder, "--device", "cpu", "--runtime", "all", "--json-out", out]
    r = _cli_with_fake_openvino(tmp_path, "raises", *args, "--binarized")
    assert r.code == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["runtimes"] == ["onnxruntime"] and "OpenVINO out" in report["notes"][0]
    assert "--runtime all left OpenVINO out" in r.stdout


def test_missing_extra_is_typed_and_runtime_all_catches_it_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from binexport.runtimes import openvino, resolve_runtimes, runtime_notes

    monkeypatch.setitem(sys.modules, "openvino", types.ModuleType("openvino"))  # imports, has no Core
    with pytest.raises(MissingExtraError, match="has no Core") as e:
        openvino.import_openvino()
    assert e.value.installed and e.value.exit_code == 2
    assert resolve_runtimes("all") == ["onnxruntime"]
    assert runtime_notes("all") and runtime_notes("ort") == []


# --- class 10: calibration from a PNG folder decodes only the images it uses ------------------------------------


def test_png_calibration_decodes_only_what_it_uses(tmp_path: Path) -> None:
    """The first 6 images are good, the rest are not even PNGs: a limit of 6 never reaches them."""
    from binexport.data.calibration import load_calibration

    for i in range(6):
        write(tmp_path / f"a{i:03d}_{i % 10}.png", good_png(i))
    for i in range(50):
        write(tmp_path / f"z{i:03d}_1.png", png(width=4096, height=4096) if i % 2 else b"not a png")
    ds = load_calibration(tmp_path, limit=6)
    assert ds.images.shape == (6, 32, 32, 3) and ds.labels.tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(InputError):
        load_calibration(tmp_path, limit=7)
