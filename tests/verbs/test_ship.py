"""predict (any image size, names, probabilities), the .ort phone files, and bundle (a Hub-ready folder)."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from support.cli import invoke
from support.models import tiny_model
from support.paths import CIFAR10_SAMPLES, DEMO_DATA, REALDATA
from support.refusals import assert_refused

from binexport.errors import InputError

DEMO_MAT = DEMO_DATA / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat"
DEMO_TRAIN = DEMO_DATA / "cifar-10-batches-py" / "data_batch_4"
CAT = CIFAR10_SAMPLES / "cifar10_00_3.png"


def chunk(t: bytes, d: bytes) -> bytes:
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


def png(img: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``img`` (filter 0 on every row): an independent writer for the tests."""
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


# --- resizing -------------------------------------------------------------------------------------------------


def test_resize_box_average_matches_block_means() -> None:
    from binexport.data.resize import resize_to_model

    img = np.random.default_rng(0).integers(0, 256, (96, 64, 3), dtype=np.uint8)
    want = img.reshape(32, 3, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))  # oracle: 3x2 block means
    assert np.abs(resize_to_model(img) - want).max() <= 0.5 + 1e-9  # the block mean, rounded


def test_resize_identity_and_upscale() -> None:
    from binexport.data.resize import axis_weights, resize_to_model

    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(resize_to_model(img), img)  # 32x32 reaches the model bit for bit
    flat = np.full((7, 5, 3), 200, np.uint8)
    assert (resize_to_model(flat) == 200).all()
    for n in (1, 5, 31, 33, 100, 4000):
        assert np.allclose(axis_weights(n).sum(axis=1), 1)
    up = resize_to_model(np.array([[[0] * 3, [255] * 3]], np.uint8).repeat(2, 0))  # 2x2 -> 32x32
    assert up[0, 0, 0] == 0 and up[0, -1, 0] == 255 and (np.diff(up[0, :, 0].astype(int)) >= 0).all()


# --- labels ---------------------------------------------------------------------------------------------------


def test_builtin_cifar_names_are_the_official_files(realdata: Path) -> None:
    from binexport.data.cifar import read_batch
    from binexport.data.labels import CIFAR10_LABELS, CIFAR100_LABELS

    meta10 = read_batch(realdata / "cifar10-partial/cifar-10-batches-py/batches.meta")
    meta100 = read_batch(realdata / "cifar100-partial/cifar-100-python/meta")

    def names(meta: dict, key: str) -> list[str]:
        v = meta.get(key, meta.get(key.encode()))
        return [x.decode() if isinstance(x, bytes) else x for x in v]

    assert list(CIFAR10_LABELS) == names(meta10, "label_names")
    assert list(CIFAR100_LABELS) == names(meta100, "fine_label_names")


def test_labels_file_must_match_the_class_count(tmp_path: Path) -> None:
    from binexport.data.labels import load_labels

    f = tmp_path / "names.txt"
    f.write_text("a\nb\nc\n")
    assert load_labels(f, 3)[0] == ("a", "b", "c")
    with pytest.raises(InputError, match="3 class names for a model with 10 classes"):
        load_labels(f, 10)
    f.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_labels(f, 1)
    assert load_labels("svhn", 10)[0][3] == "3"


# --- predict on a tiny model (fast) -----------------------------------------------------------------------------


@pytest.fixture
def tiny_bwn(tmp_path: Path) -> Path:
    from binexport import formats

    p = tmp_path / "tiny.bwn"
    p.write_bytes(formats.get("bwn").write(tiny_model()))
    return p


def test_predict_any_size_json(tmp_path: Path, tiny_bwn: Path) -> None:
    rng = np.random.default_rng(2)
    a, b = tmp_path / "wide.png", tmp_path / "small.png"
    a.write_bytes(png(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)))
    b.write_bytes(png(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)))
    r = invoke("predict", str(tiny_bwn), str(a), str(b), "--top-k", "3", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["schema_version"] == 1 and d["num_classes"] == 10 and len(d["images"]) == 2
    assert (d["images"][0]["width"], d["images"][0]["height"]) == (500, 300)
    top = d["images"][0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    from binexport.data.labels import CIFAR10_LABELS

    assert top[0]["label"] == CIFAR10_LABELS[top[0]["index"]]


def test_predict_refuses_non_png_and_huge_images(tmp_path: Path, tiny_bwn: Path) -> None:
    jpg = tmp_path / "x.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    r = invoke("predict", str(tiny_bwn), str(jpg))
    assert_refused(r, match="not a PNG")
    huge = tmp_path / "huge.png"
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 4000, 4000, 8, 2, 0, 0, 0))  # a 60-byte file declaring 16 Mpx
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    r = invoke("predict", str(tiny_bwn), str(huge))
    assert_refused(r, match="4000x4000")


def test_4000x4000_png_is_refused_within_a_memory_bound(tmp_path: Path) -> None:
    """A real 4,000x4,000 PNG (valid, 48 MB of pixels) is refused from its header: peak memory stays small."""
    huge = tmp_path / "huge.png"
    img = np.zeros((4000, 4000, 3), np.uint8)
    huge.write_bytes(png(img))
    del img
    code = (
        "import resource, sys\n"
        "from binexport.verbs.predict import load_images\n"
        "from binexport.errors import InputError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_images([sys.argv[1]])\nexcept InputError as e:\n    print('refused', e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(huge)], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused") and "4000x4000" in lines[0], out.stdout + out.stderr
    assert int(lines[-1]) < 32 << 20  # the file is read (a few hundred KB), nothing is decompressed


# --- .ort (fast, hostile) ---------------------------------------------------------------------------------------


def test_ort_files_are_detected_and_a_lying_one_refused(tmp_path: Path) -> None:
    from binexport import formats
    from binexport.runtimes import is_onnx, open_artifact

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x10\x00\x00\x00ORTM" + bytes(40))
    assert formats.detect_file(bad)[1].name == "ort" and is_onnx(bad)
    with pytest.raises(InputError, match="bad.bin") as e:
        open_artifact(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="ONNX Runtime only"):
        open_artifact(bad, runtime="openvino")


# --- bundle (fast, tiny model) ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_images(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        (d / f"img{i}_{i}.png").write_bytes(png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    return d


def test_bundle_tiny_model(tmp_path: Path, tiny_bwn: Path, tiny_images: Path) -> None:
    out = tmp_path / "hub"
    r = invoke("bundle", str(tiny_bwn), "-o", str(out), "--images", str(tiny_images), "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["license"] == "unknown" and any("license" in w for w in rep["warnings"])
    assert any("model_int8" in w for w in rep["warnings"])  # no --calibrate
    for name in ("model.safetensors", "model.bwn", "onnx/model.onnx", "onnx/model.ort", "config.json", "README.md"):
        assert (out / name).is_file(), name
    _check_sums(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_classes"] == 10 and cfg["labels"][3] == "cat" and cfg["files"]["onnx/model.ort"]
    _check_card(out / "README.md", n_rows=4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hub")]
    r = invoke("bundle", str(tiny_bwn), "-o", str(out), "--images", str(tiny_images))
    assert_refused(r, match="already exists")


def test_interrupted_bundle_leaves_nothing(tmp_path: Path, tiny_bwn: Path, tiny_images: Path, monkeypatch) -> None:
    import binexport

    def boom(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(binexport, "verify", boom)
    with pytest.raises(KeyboardInterrupt):
        binexport.bundle(tiny_bwn, tmp_path / "hub", images=tiny_images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "tiny.bwn"]


def _check_sums(out: Path) -> None:
    lines = (out / "SHA256SUMS").read_text().splitlines()
    listed = set()
    for line in lines:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
        listed.add(name)
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == on_disk


def _check_card(card: Path, n_rows: int) -> None:
    """huggingface_hub's own parser accepts the card, and its model-index holds verify.json's numbers, file by file."""
    hub = pytest.importorskip("huggingface_hub", reason="the card's oracle: pip install -e '.[test]'")
    text = card.read_text()
    assert text.startswith("---\n")
    c = hub.ModelCard.load(card, ignore_metadata_errors=False)  # raises on a model-index it can't read
    d = c.data
    assert d.pipeline_tag == "image-classification" and d.library_name == "binexport"
    assert isinstance(d.license, str) and d.license and d.metrics == ["accuracy"]
    assert ("1-bit" in d.tags) != ("full-precision" in d.tags)
    verify = json.loads((card.parent / "verify.json").read_text())
    assert d.datasets == (None if verify["data"] == "images" else [verify["data"].lower()])  # cifar100: a Hub id
    results = d.eval_results
    assert results is not None and len(results) == n_rows
    measured = {a["path"]: a["top1"] for a in verify["artifacts"]}  # bundle paths: relative to the folder
    for r in results:
        assert r.task_type == "image-classification" and r.metric_type == "accuracy" and r.dataset_split == "test"
        assert r.dataset_name and r.dataset_type and r.verified is False
        file = r.metric_name.removeprefix("top-1 accuracy (").removesuffix(")")
        assert r.metric_value == round(measured[file], 6), file  # the number verify measured, not a typed one
    assert {r.metric_name for r in results} == {f"top-1 accuracy ({f})" for f in measured if not f.startswith("/")}
    again = hub.ModelCardData(**d.to_dict())  # and back: the Hub's schema, as huggingface_hub writes it
    assert again.to_dict() == d.to_dict() and again.eval_results == results


# --- real data (slow) -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo model in every file kind: .mat, .bwn, safetensors, 1-bit ONNX (+ .ort), int8 ONNX (+ .ort)."""
    import binexport

    if not CAT.is_file():
        pytest.skip(f"real material absent: {REALDATA}")
    d = tmp_path_factory.mktemp("demo")
    files = {"mat": DEMO_MAT}
    for fmt, name in (("bwn", "m.bwn"), ("safetensors", "m.safetensors")):
        binexport.pack(DEMO_MAT, d / name, format=fmt)
        files[fmt] = d / name
    binexport.export_onnx(DEMO_MAT, d / "m.onnx", ort_format=True)
    r8 = binexport.export_onnx(
        DEMO_MAT, d / "m8.onnx", weights="int8", calibrate=str(DEMO_TRAIN), calibration_size=32, ort_format=True
    )
    files.update(onnx=d / "m.onnx", ort=d / "m.ort", int8=d / "m8.onnx", int8_ort=d / "m8.ort")
    files["_int8_report"] = r8  # type: ignore[assignment]
    return files


@pytest.mark.slow
def test_cat_is_a_cat_from_every_file_and_matches_verify(demo_files: dict) -> None:
    """predict's top-1 is, image by image, what the file's runtime gives on verify's own loading of the images."""
    import binexport
    from binexport.data import normalize
    from binexport.data.png import load_labelled_folder
    from binexport.runtimes import open_artifact, select_input

    images = sorted(CIFAR10_SAMPLES.glob("*.png"))
    pixels, labels, _ = load_labelled_folder(CIFAR10_SAMPLES)  # verify's loader: the names' labels, in name order
    assert [int(p.name.rsplit("_", 1)[1][:-4]) for p in images] == list(labels)
    for kind, f in demo_files.items():
        if kind.startswith("_"):
            continue
        cat = binexport.predict(f, [CAT], top_k=1)
        assert cat.images[0].top[0].label == "cat", kind
        r = binexport.predict(f, images, top_k=1)
        assert [im.path for im in r.images] == [str(p) for p in images]
        ours = np.array([im.top[0].index for im in r.images])
        rt = open_artifact(f).session  # the reference: the runtime session itself, fed as verify feeds it
        theirs = rt.logits(select_input(rt.input_kind, pixels, normalize(pixels))).argmax(axis=1)
        assert np.array_equal(ours, theirs), (kind, ours, theirs)  # per image, not a count
        v = binexport.verify([f], images=CIFAR10_SAMPLES, reference=DEMO_MAT)
        assert v.artifacts[0].top1_correct == int((ours == labels).sum()), kind


@pytest.mark.slow
def test_int8_ort_size_ops_and_logits(demo_files: dict) -> None:
    from binexport.data import normalize
    from binexport.data.png import load_labelled_folder
    from binexport.formats.ort import DISABLED_OPTIMIZERS, check_ort_bounds
    from binexport.runtimes import select_input
    from binexport.runtimes.ort import open_session

    o = demo_files["_int8_report"].ort
    assert o.output_bytes <= 1.10 * o.onnx_bytes  # the unpack is not folded (27 MB where it is)
    ops = check_ort_bounds(demo_files["int8_ort"])
    cfg = Path(o.config).read_text()
    listed = set()
    for line in cfg.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        domain, _, entries = line.split(";", 2)
        depth, name = 0, ""
        for ch in entries + ",":  # op names at brace depth 0, each maybe followed by its {"inputs": ...} types
            depth += (ch == "{") - (ch == "}")
            if depth == 0 and ch == ",":
                listed.add(("" if domain == "ai.onnx" else domain, name))
                name = ""
            elif depth == 0 and ch != "}":
                name += ch
    assert listed == set(ops)  # the config lists exactly what the graph uses
    imgs, _, _ = load_labelled_folder(CIFAR10_SAMPLES)
    for onnx_file, ort_file in (("int8", "int8_ort"), ("onnx", "ort")):  # int8 and 1-bit
        a = open_session(str(demo_files[onnx_file]), disabled_optimizers=DISABLED_OPTIMIZERS)  # as the .ort was made
        b = open_session(demo_files[ort_file].read_bytes())
        x = select_input(a.input_kind, imgs, normalize(imgs))
        assert np.array_equal(a.logits(x), b.logits(x)), ort_file  # the same graph, the same kernels: bit for bit
        assert _optimized_ops(demo_files[onnx_file]) == set(check_ort_bounds(demo_files[ort_file])), ort_file


def _optimized_ops(onnx_file: Path) -> set[tuple[str, str]]:
    """The operators of ONNX Runtime's optimised graph of ``onnx_file`` with the .ort's optimisers disabled."""
    import onnx
    import onnxruntime as ort

    from binexport.formats.ort import DISABLED_OPTIMIZERS

    saved = onnx_file.with_suffix(".optimized.onnx")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(saved)
    ort.InferenceSession(str(onnx_file), so, ["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS))
    return {(n.domain, n.op_type) for n in onnx.load(saved).graph.node}


@pytest.mark.slow
def test_bundle_published_checkpoint(realdata: Path, tmp_path: Path) -> None:
    import binexport

    out = tmp_path / "hub"
    r = binexport.bundle(
        realdata / "seed-checkpoint/wrn20-10-1bit-packed.pth.tar",
        out,
        dataset="CIFAR100",
        data_root=realdata / "cifar100-partial",
        calibrate="CIFAR100",
        calibration_size=32,
        limit=8,
        license="mit",
    )
    assert r.upload_command == f"hf upload USER/MODEL {out} ."
    names = {f.path for f in r.files}
    assert {"onnx/model_int8.onnx", "onnx/model_int8.ort", "model.safetensors", "verify.json"} <= names
    _check_sums(out)
    _check_card(out / "README.md", n_rows=6)  # safetensors, bwn, 1-bit and int8 ONNX and their .ort files
    v = json.loads((out / "verify.json").read_text())
    assert v["passed"] and v["num_images"] == 8
    again = binexport.verify(
        [out / f.path for f in r.files if f.top1 is not None],
        dataset="CIFAR100",
        data_root=realdata / "cifar100-partial",
        limit=8,
        reference=out / "model.bwn",
    )
    assert again.passed


def test_ort_runs_in_verify_and_bench(tmp_path: Path, tiny_bwn: Path, tiny_images: Path) -> None:
    import binexport

    r = binexport.export_onnx(tiny_bwn, tmp_path / "t.onnx", ort_format=True)
    assert (
        r.ort is not None and r.ort.output_bytes <= r.ort.onnx_bytes + (64 << 10) and r.ort.max_abs_diff_vs_onnx < 1e-4
    )
    assert Path(r.ort.config).read_text().startswith("# Generated from model/s:")
    ort_file = tmp_path / "t.ort"
    v = binexport.verify([tiny_bwn, ort_file, tmp_path / "t.onnx"], images=tiny_images)
    assert v.passed and v.artifacts[1].format == "ort" and v.artifacts[1].runtime == "onnxruntime"
    b = binexport.bench([ort_file], seconds=0.2, device="cpu")
    assert b.to_dict()["schema_version"] >= 1
    r2 = invoke("to-onnx", str(tiny_bwn), "-o", str(tmp_path / "t.onnx"), "--ort-format")
    assert_refused(r2, match="exists")  # no silent replacement of the .onnx or the .ort


def test_bundle_full_precision_model_gets_float32_and_fp16(tmp_path: Path, tiny_images: Path) -> None:
    import binexport
    from binexport import formats

    src = tmp_path / "fp.bwn"
    src.write_bytes(formats.get("bwn").write(tiny_model(binarized=False)))
    r = binexport.bundle(src, tmp_path / "hub", images=tiny_images, license="mit")
    names = {f.path for f in r.files}
    assert {"onnx/model.onnx", "onnx/model_fp16.onnx", "onnx/model_fp16.ort"} <= names and not r.binarized
    assert not any("int8" in n for n in names) and not r.warnings
    _check_card(tmp_path / "hub" / "README.md", n_rows=6)


@pytest.mark.slow
def test_bundle_with_bench_names_the_cpu(tmp_path: Path, tiny_bwn: Path, tiny_images: Path) -> None:
    import binexport

    r = binexport.bundle(tiny_bwn, tmp_path / "hub", images=tiny_images, bench=True, bench_seconds=0.2)
    bench = json.loads((tmp_path / "hub" / "bench.json").read_text())
    assert "bench.json" in {f.path for f in r.files} and bench["cpu"]
    assert f"Benchmarked on {bench['cpu']}" in (tmp_path / "hub" / "README.md").read_text()
    _check_sums(tmp_path / "hub")


def test_a_photo_sized_cat_shrinks_back_to_the_cifar_cat(realdata: Path, tmp_path: Path) -> None:
    """The real 32x32 cat blown up 20x15 (640x480 PNG) and read back through predict's loader is the same cat."""
    from binexport.data.png import read_png
    from binexport.verbs.predict import load_images

    cat = read_png(CAT)
    big = tmp_path / "bigcat.png"
    big.write_bytes(png(np.repeat(np.repeat(cat, 20, 0), 15, 1)))
    pixels, sizes = load_images([big])
    assert sizes == [(480, 640)] and np.array_equal(pixels[0], cat)
