"""Issue 16, classes 10-13: what verify and bench are fed is bounded in time, memory and integrity.

10. a bench worker that hangs is stopped at a deadline (one line, exit 2); --threads is a few per CPU;
11. an ONNX graph is sized before any session loads it (ConstantOfShape of 400 M floats, Expand, Tile, Range,
    Resize, subgraphs, custom domains, corrupt constants, external data, batch-squared tensors ...);
12. verify --images streams: peak memory does not grow with the number of images;
13. PNG chunk CRCs are checked.

What could allocate gigabytes runs in a subprocess under RLIMIT_AS; nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile import assert_refused, good_png, png, png_chunk, run_cli, write

from binexport.errors import InputError

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from binexport import formats
    from binexport.data.synth import make_arch, write_training_run

    root = tmp_path_factory.mktemp("bounds")
    ckpt = write_training_run(root / "run", make_arch(8, 1, 10), binarize=True)
    onnx = root / "m.onnx"
    onnx.write_bytes(formats.get("onnx").write(formats.load(ckpt)))
    imgs = root / "imgs"
    for i in range(4):
        write(imgs / f"a_{i}.png", good_png(i))
    thin = write_training_run(root / "thin", make_arch(8, 0.25, 10), binarize=True)  # 4 channels: fast
    return {"root": root, "ckpt": ckpt, "onnx": onnx, "imgs": imgs, "thin": thin}


# --- 10: threads and the worker's deadline -------------------------------------------------------------------


def test_threads_beyond_the_machine_are_refused_by_cli_and_library(kit: dict[str, Any]) -> None:
    from binexport import bench
    from binexport.runtimes import max_threads, open_artifact

    too_many = max_threads() + 1
    assert max_threads() == 4 * (os.cpu_count() or 1)
    err = assert_refused(run_cli("bench", kit["onnx"], "--threads", str(too_many)))
    assert f"0..{max_threads()}" in err
    assert_refused(run_cli("bench", kit["onnx"], "--threads", "1024"))
    assert_refused(run_cli("bench", kit["onnx"], "--threads", "99999999999999999999"))
    with pytest.raises(InputError, match="--threads must be 0.."):
        bench([kit["onnx"]], threads=too_many)
    with pytest.raises(InputError, match="--threads must be 0.."):
        open_artifact(kit["onnx"], "cpu", threads=too_many)


HANGS_AFTER_A_CHILD = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
if sys.argv[2] == "answers-load":
    print('{"ok": true}', flush=True)
    sys.stdin.readline()
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in text  # a zombie is dead, waiting for its parent (init) to reap it


@pytest.mark.parametrize("stage", ["hangs-loading", "answers-load"])
def test_a_hung_worker_is_killed_with_its_children_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    from binexport.runtimes import worker

    monkeypatch.setattr(worker, "LOAD_TIMEOUT_S", 1.0 if stage == "hangs-loading" else 60.0)
    pidfile = tmp_path / "child.pid"
    cmd = [sys.executable, "-c", HANGS_AFTER_A_CHILD, str(pidfile), stage]
    t0 = time.monotonic()
    with pytest.raises(InputError, match="no answer within 1 s while (loading the file|timing 3 calls of 1 image)"):
        w = worker.Worker(tmp_path / "m.onnx", "cpu", 0, command=cmd)
        w.time(1, 3, timeout=1.0)
    assert time.monotonic() - t0 < 50  # not the 120 s it would sleep
    pid = int(pidfile.read_text())
    for _ in range(50):
        if _gone(pid):
            break
        time.sleep(0.1)
    assert _gone(pid), "the worker's child outlived it: the process group was not killed"


def test_a_worker_past_its_deadline_is_one_line_exit_2_from_the_cli(
    kit: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from binexport.runtimes import worker

    monkeypatch.setattr(worker, "LOAD_TIMEOUT_S", 0.01)  # no interpreter starts that fast
    err = assert_refused(run_cli("bench", kit["onnx"], "--seconds", "0.1", "--device", "cpu"))
    assert "no answer within" in err and "--threads" in err


def test_deadlines_grow_with_the_work_asked_for() -> None:
    from binexport.runtimes.worker import probe_timeout, slice_timeout

    assert probe_timeout(4096) > probe_timeout(1) >= 60
    assert slice_timeout(2.0, 100) > 4 * 2.0 * 100 and slice_timeout(0.0, 1) >= 30


# --- 11: ONNX graphs sized before any session ----------------------------------------------------------------


def _graph(kind: str) -> bytes:
    """A graph taking (N, 3, 32, 32) and giving (N, 3), with one hostile part named by ``kind``."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    f = T.FLOAT
    nodes = [h.make_node("ReduceMean", ["x"], ["y0"], axes=[2, 3], keepdims=0)]
    inits: list[Any] = []
    extra_out = None  # a tensor folded into y by ReduceSum + Add, so the hostile part is live
    funcs: list[Any] = []

    def i64(name: str, values: list[int]) -> None:
        inits.append(h.make_tensor(name, T.INT64, [len(values)], values))

    if kind == "constant-of-shape-400M":
        i64("s", [400_000_000])
        nodes.append(h.make_node("ConstantOfShape", ["s"], ["big"], value=h.make_tensor("v", f, [1], [1.0])))
        extra_out = "big"
    elif kind == "expand-20000x20000":
        inits.append(h.make_tensor("one", f, [1], [1.0]))
        i64("s", [20000, 20000])
        nodes.append(h.make_node("Expand", ["one", "s"], ["big"]))
        extra_out = "big"
    elif kind == "tile-x-1000":
        i64("r", [1, 1000, 1, 1])
        nodes.append(h.make_node("Tile", ["x", "r"], ["big"]))
        extra_out = "big"
    elif kind == "range-400M":
        inits += [h.make_tensor("a", f, [], [0.0]), h.make_tensor("b", f, [], [4e8]), h.make_tensor("d", f, [], [1.0])]
        nodes.append(h.make_node("Range", ["a", "b", "d"], ["big"]))
        extra_out = "big"
    elif kind == "resize-x100":
        inits += [h.make_tensor("scales", f, [4], [1.0, 1.0, 100.0, 100.0])]
        nodes.append(h.make_node("Resize", ["x", "", "scales"], ["big"]))
        extra_out = "big"
    elif kind == "pad-2000-channels":
        i64("p", [0, 0, 0, 0, 0, 2000, 0, 0])
        nodes.append(h.make_node("Pad", ["x", "p"], ["big"]))
        extra_out = "big"
    elif kind == "pads-together":  # each 3.5 MiB per image passes alone; 6 of them pass the total
        i64("p", [0, 0, 0, 0, 0, 890, 0, 0])
        nodes += [h.make_node("Pad", ["x", "p"], [f"p{k}"]) for k in range(6)]
        nodes += [h.make_node("Sum", [f"p{k}" for k in range(6)], ["big"])]
        extra_out = "big"
    elif kind == "shape-from-data":
        nodes += [
            h.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
            h.make_node("Cast", ["m"], ["mi"], to=T.INT64),
            h.make_node("Reshape", ["mi", "one_d"], ["s"]),
            h.make_node("ConstantOfShape", ["s"], ["big"], value=h.make_tensor("v", f, [1], [1.0])),
        ]
        i64("one_d", [1])
        extra_out = "big"
    elif kind == "batch-squared":
        i64("flat", [0, -1])
        nodes += [
            h.make_node("Reshape", ["x", "flat"], ["xf"]),
            h.make_node("Transpose", ["xf"], ["xt"]),
            h.make_node("MatMul", ["xf", "xt"], ["big"]),
        ]
        extra_out = "big"
    elif kind == "constant-node-lies":
        t = h.make_tensor("c", f, [1], [1.0])
        t.dims[:] = [1_000_000]
        nodes.append(h.make_node("Constant", [], ["big"], value=t))
        extra_out = "big"
    elif kind == "initializer-lies":
        t = h.make_tensor("c", f, [1], np.zeros(1, np.float32).tobytes(), raw=True)
        t.dims[:] = [100_000, 1000]
        inits.append(t)
        nodes.append(h.make_node("Identity", ["c"], ["big"]))
        extra_out = "big"
    elif kind == "external-data":
        t = h.make_tensor("c", f, [4], [0.0] * 4)
        t.ClearField("float_data")
        t.data_location = T.EXTERNAL
        t.external_data.append(onnx.StringStringEntryProto(key="location", value="/dev/zero"))
        inits.append(t)
        nodes.append(h.make_node("Identity", ["c"], ["big"]))
        extra_out = "big"
    elif kind == "custom-domain":
        nodes.append(h.make_node("Gelu", ["x"], ["big"], domain="com.evil"))
        extra_out = "big"
    elif kind == "if-subgraph":
        inits.append(h.make_tensor("cond", T.BOOL, [], [True]))
        branch = h.make_graph(
            [h.make_node("Identity", ["x"], ["o"])], "b", [], [h.make_tensor_value_info("o", f, None)]
        )
        nodes.append(h.make_node("If", ["cond"], ["big"], then_branch=branch, else_branch=branch))
        extra_out = "big"
    elif kind == "local-function":
        funcs.append(
            h.make_function(
                "local", "Twice", ["a"], ["b"], [h.make_node("Add", ["a", "a"], ["b"])], [h.make_opsetid("", 13)]
            )
        )
        nodes.append(h.make_node("Twice", ["x"], ["big"], domain="local"))
        extra_out = "big"
    elif kind == "string-initializer":
        inits.append(h.make_tensor("c", T.STRING, [1], [b"x"]))
        nodes.append(h.make_node("Identity", ["c"], ["big"]))
    elif kind == "sparse-initializer":
        pass  # added below
    if extra_out is not None:
        nodes += [
            h.make_node("ReduceSum", [extra_out], ["z"], keepdims=0),
            h.make_node("Cast", ["z"], ["zf"], to=f),
            h.make_node("Add", ["y0", "zf"], ["y"]),
        ]
    else:
        nodes.append(h.make_node("Identity", ["y0"], ["y"]))
    g = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", f, ["N", 3, 32, 32])],
        [h.make_tensor_value_info("y", f, None)],
        inits,
    )
    if kind == "sparse-initializer":
        values = h.make_tensor("sp", f, [1], [1.0])
        g.sparse_initializer.append(h.make_sparse_tensor(values, h.make_tensor("ix", T.INT64, [1], [0]), [10**9]))
    opsets = [h.make_opsetid("", 13)] + ([h.make_opsetid("local", 1)] if funcs else [])
    m = h.make_model(g, opset_imports=opsets, functions=funcs)
    m.ir_version = 8
    return m.SerializeToString()


HOSTILE_GRAPHS = {
    "constant-of-shape-400M": "one constant tensor takes 1,525.9 MiB",
    "expand-20000x20000": "one constant tensor takes",
    "tile-x-1000": "operator 'Tile' is not one binexport runs",
    "pad-2000-channels": "one tensor takes 7.8 MiB per image, more than the 4.0 MiB allowed",
    "pads-together": "per image together, more than",
    "range-400M": "operator 'Range' is not one binexport runs",
    "resize-x100": "operator 'Resize' is not one binexport runs",
    "shape-from-data": "(not fully known|can't be inferred)",
    "batch-squared": "square of the batch",
    "constant-node-lies": "declares shape \\[1000000\\]",
    "initializer-lies": "declares shape \\[100000, 1000\\]",
    "external-data": "external file",
    "custom-domain": "operator domain 'com.evil'",
    "if-subgraph": "subgraph",
    "local-function": "local functions",
    "string-initializer": "element type 8",
    "sparse-initializer": "sparse initializers",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_GRAPHS))
def test_hostile_graph_is_refused_before_any_session(kind: str) -> None:
    from binexport.formats.onnx.bounds import check_onnx_bounds

    data = _graph(kind)
    assert len(data) < 2000  # each is a few hundred bytes
    with pytest.raises(InputError, match=HOSTILE_GRAPHS[kind]):
        check_onnx_bounds(data)


def test_the_hostile_graphs_are_valid_but_for_the_hostile_part() -> None:
    """The oracle: the same graph without its hostile part passes, so each refusal is for that part."""
    from binexport.formats.onnx.bounds import check_onnx_bounds

    b = check_onnx_bounds(_graph("none"))
    assert b.image_total_bytes > 0 and b.const_total_bytes == 0


@pytest.mark.parametrize("weights", ["float32", "float16", "1-bit", "int8"])
@pytest.mark.parametrize("normalize_inside", [False, True])
def test_every_graph_binexport_writes_is_within_bounds(weights: str, normalize_inside: bool) -> None:
    from helpers import tiny_model

    from binexport.formats.onnx import build_model
    from binexport.formats.onnx.bounds import MAX_IMAGE_TENSOR_BYTES, check_onnx_bounds
    from binexport.formats.onnx.int8 import required_ranges

    model = tiny_model(depth=14, width=2)
    ranges = {n: (-3.0, 3.0) for n in required_ranges(model)} if weights == "int8" else None
    for batch in ("dynamic", 8):
        data = build_model(
            model, weights, batch=batch, normalize_inside=normalize_inside, int8_ranges=ranges
        ).SerializeToString()
        b = check_onnx_bounds(data)
        # the widest activation of a WRN-14-2: 32 channels of 32x32 (float16: half)
        assert b.image_tensor_bytes == 32 * 32 * 32 * (2 if weights == "float16" else 4) <= MAX_IMAGE_TENSOR_BYTES


REAL = HERE.parents[0].parent / "shared" / "realdata"


@pytest.mark.skipif(not (REAL / "seed-checkpoint").is_dir(), reason="../shared/realdata is absent")
@pytest.mark.parametrize("weights", ["1-bit", "int8"])
def test_real_wrn20_10_graphs_are_within_bounds(weights: str) -> None:
    from binexport import formats
    from binexport.formats.onnx import build_model
    from binexport.formats.onnx.bounds import CONST_TOTAL_FACTOR, check_onnx_bounds
    from binexport.formats.onnx.int8 import required_ranges

    model = formats.load(REAL / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar")
    ranges = {n: (-3.0, 3.0) for n in required_ranges(model)} if weights == "int8" else None
    data = build_model(model, weights, int8_ranges=ranges).SerializeToString()
    b = check_onnx_bounds(data)
    assert b.image_tensor_bytes == 160 * 32 * 32 * 4  # WRN-20-10's widest activation
    assert b.const_total_bytes < CONST_TOTAL_FACTOR * len(data)  # the 1-bit weights, expanded to float32


BOUNDED_SCRIPT = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
sys.path.insert(0, sys.argv[2])
from hostile import run_cli
out = {}
for name, args in json.loads(sys.argv[1]).items():
    r = run_cli(*args)
    out[name] = [r.exit_code, r.stderr, repr(r.exception) if r.exit_code not in (0, 2) else ""]
status = open("/proc/self/status").read()
out["peak_kb"] = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps(out))
"""


def _bounded(cases: dict[str, list[str]]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", BOUNDED_SCRIPT, json.dumps(cases), str(HERE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_constant_of_shape_400M_is_refused_by_verify_and_bench_in_bounded_memory(
    kit: dict[str, Any], tmp_path: Path
) -> None:
    bomb = write(tmp_path / "bomb.onnx", _graph("constant-of-shape-400M"))
    cases = {
        "verify": [
            "verify",
            str(bomb),
            "--reference",
            str(kit["ckpt"]),
            "--images",
            str(kit["imgs"]),
            "--device",
            "cpu",
        ],
        "bench": ["bench", str(bomb), "--seconds", "0.1", "--device", "cpu"],
    }
    out = _bounded(cases)
    for name in cases:
        code, stderr, exc = out[name]
        assert code == 2, (name, code, stderr, exc)
        assert len(stderr.splitlines()) == 1 and "one constant tensor takes 1,525.9 MiB" in stderr, stderr
    assert out["peak_kb"] < 1_000_000  # it allocated 1.9 GB in verify before


# --- 12: verify streams its images -----------------------------------------------------------------------------

STREAM_SCRIPT = r"""
import json, sys, tracemalloc
from binexport import verify
import binexport.runtimes.torch_ref  # imported before tracing starts: libraries are not the images' memory
tracemalloc.start()  # numpy's buffers are traced; what torch allocates itself does not grow with the count
r = verify([sys.argv[1]], images=sys.argv[2], device="cpu", batch_size=256)
print(json.dumps({"images": r.num_images, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_verify_peak_memory_does_not_grow_with_the_number_of_images(kit: dict[str, Any], tmp_path: Path) -> None:
    """1,100 and 2,100 tiny PNGs: both fill whole 1,024-image chunks, so their traced peaks may differ by the
    logits, labels and file names only (~300 B an image), not by decoded images (35 KB an image before
    streaming: 43 MB and 125 MB for 1,100 and 3,100 images). Traced (tracemalloc), not RSS: RSS of the same
    run varies by 80 MB here with torch's thread pools and allocator."""
    one = png()  # 82 bytes: a valid 32x32 all-black image
    peaks = {}
    for n in (1100, 2100):
        d = tmp_path / f"imgs{n}"
        d.mkdir()
        for i in range(n):
            (d / f"i{i:05d}_{i % 10}.png").write_bytes(one)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(
            [sys.executable, "-c", STREAM_SCRIPT, str(kit["thin"]), str(d)],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["images"] == n
        peaks[n] = out["peak"]
    assert peaks[2100] - peaks[1100] < 1000 * 2048, peaks  # at most 2 KB an image


def test_verify_streams_cifar_files_too(kit: dict[str, Any]) -> None:
    """The stream is the same for a CIFAR file: the images of every chunk go through every row in order."""
    from binexport.runtimes import STREAM_CHUNK, open_artifact, stream_logits

    a = open_artifact(kit["ckpt"], "cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (STREAM_CHUNK + 37, 32, 32, 3), dtype=np.uint8)
    from binexport.data import normalize

    whole = a.session.logits(normalize(pixels), 100)
    seen: list[tuple[str, int, int]] = []
    [(streamed, secs)] = stream_logits(
        [a.session], pixels, len(pixels), 100, lambda label, done, total: seen.append((label, done, total))
    )
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)
    assert secs > 0 and seen[-1] == ("torch", len(pixels), len(pixels))
    assert [d for _, d, _ in seen] == sorted({d for _, d, _ in seen})  # per batch, increasing


# --- 13: PNG chunk CRCs ------------------------------------------------------------------------------------------


def _bad_crc(data: bytes, ctype: bytes) -> bytes:
    pos = data.index(ctype) - 4
    length = int.from_bytes(data[pos : pos + 4], "big")
    end = pos + 8 + length
    return data[:end] + b"\0\0\0\0" + data[end + 4 :]


@pytest.mark.parametrize(
    "case, needle",
    [
        ("zeroed-IHDR-crc", "b'IHDR' at byte 8 fails its CRC"),
        ("zeroed-IDAT-crc", "b'IDAT' at byte 33 fails its CRC"),
        ("zeroed-IEND-crc", "b'IEND'"),
        ("flipped-pixel-bit", "b'IDAT' at byte 33 fails its CRC"),
        ("ancillary-chunk-bad-crc", "b'tEXt'"),
        ("crc-cut-off", "has no CRC"),
    ],
)
def test_png_chunk_crcs_are_checked(kit: dict[str, Any], tmp_path: Path, case: str, needle: str) -> None:
    good = good_png(7)
    if case.startswith("zeroed-"):
        data = _bad_crc(good, case.split("-")[1].encode())
    elif case == "flipped-pixel-bit":
        data = bytearray(good)
        data[33 + 8 + 10] ^= 1  # a bit inside the IDAT data: zlib may still inflate it, the CRC can't match
        data = bytes(data)
    elif case == "ancillary-chunk-bad-crc":
        text = png_chunk(b"tEXt", b"Comment\0hi")
        data = good[:33] + text[:-4] + b"\1\2\3\4" + good[33:]
    else:
        data = good[:-2]
    d = tmp_path / "imgs"
    write(d / "x_3.png", data)
    err = assert_refused(run_cli("verify", kit["ckpt"], "--images", d, "--device", "cpu"))
    assert "x_3.png" in err and needle in err, err
