"""Hardening round 3, untrusted ONNX on ONNX Runtime and OpenVINO (docs/safety.md, "Round 3"):

4. operators with scratch memory the declared tensors don't show (ConvTranspose, Attention) are refused by an
   allow-list, and a convolution's im2col workspace is sized;
5. graphs of 100,000 nodes, or deeper than a WRN, are refused before any runtime sees them, and verify compiles
   on OpenVINO in a process of its own first;
6. inputs and outputs must be an image batch and (N, classes) logits: a scalar output is refused up front;
10. the allowances grow with the weights a graph holds, not with its file's length.

Every CLI case runs in a process of its own: exit 2, one stderr line, no traceback, no signal, peak RSS
(``os.wait4`` in a small launcher, so the child's own peak, not pytest's) under the bound docs/safety.md
states. Nothing here asserts a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile import good_png, write

from binexport.errors import InputError

HERE = Path(__file__).parent
#: What docs/safety.md promises a refused graph costs: the interpreter, torch and the runtimes, well under 1 GiB.
REFUSED_PEAK_BYTES = 1 << 30


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from binexport.data.synth import make_arch, write_training_run

    root = tmp_path_factory.mktemp("round3")
    ckpt = write_training_run(root / "run", make_arch(8, 1, 10), binarize=True)
    imgs = root / "imgs"
    for i in range(2):
        write(imgs / f"a_{i}.png", good_png(i))
    return {"root": root, "ckpt": ckpt, "imgs": imgs}


def graph(kind: str, opset: int = 13) -> bytes:
    """(N, 3, 32, 32) -> (N, 3) logits by a global mean, with one hostile part named by ``kind``."""
    from onnx import TensorProto as T
    from onnx import helper as h

    f = T.FLOAT
    x_in = h.make_tensor_value_info("x", f, ["N", 3, 32, 32])
    nodes: list[Any] = []
    inits: list[Any] = []
    feat = "x"  # what the global mean reads
    out_dims: list[Any] | None = None
    extra_inputs: list[Any] = []
    doc = ""

    def zeros(name: str, dims: list[int]) -> None:
        inits.append(h.make_tensor(name, f, dims, np.zeros(dims, np.float32).tobytes(), raw=True))

    if kind == "conv-transpose":  # K 129, M 4: ORT's column buffer is C x K^2 x H x W floats (~800 MB)
        zeros("w", [3, 4, 129, 129])
        nodes.append(h.make_node("ConvTranspose", ["x", "w"], ["t"]))
        feat = "t"
    elif kind == "attention":  # sequence 3,072: an S x S score matrix per image (36 MiB), never declared
        opset = 23
        inits.append(h.make_tensor("s", T.INT64, [4], [0, 1, 3072, 1]))
        nodes += [h.make_node("Reshape", ["x", "s"], ["q"]), h.make_node("Attention", ["q", "q", "q"], ["a"])]
        inits.append(h.make_tensor("back", T.INT64, [4], [0, 3, 32, 32]))
        nodes.append(h.make_node("Reshape", ["a", "back"], ["t"]))
        feat = "t"
    elif kind == "huge-conv-kernel":  # a 97x97 kernel padded to 32x32: im2col of 3 x 97^2 x 32^2 floats (110.3 MiB)
        zeros("w", [3, 3, 97, 97])
        nodes.append(h.make_node("Conv", ["x", "w"], ["t"], pads=[48, 48, 48, 48]))
        feat = "t"
    elif kind in ("100k-nodes", "too-deep"):
        from binexport.formats.onnx.ops import MAX_GRAPH_DEPTH

        n = 100_000 if kind == "100k-nodes" else MAX_GRAPH_DEPTH - 1  # + the mean and the output
        nodes += [h.make_node("Relu", ["x" if i == 0 else f"r{i - 1}"], [f"r{i}"]) for i in range(n)]
        feat = f"r{n - 1}"
    elif kind == "float-nhwc-input":
        x_in = h.make_tensor_value_info("x", f, ["N", 32, 32, 3])
        nodes.append(h.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]))
        feat = "t"
    elif kind == "two-inputs":
        extra_inputs.append(h.make_tensor_value_info("x2", f, ["N", 3, 32, 32]))
        nodes.append(h.make_node("Add", ["x", "x2"], ["t"]))
        feat = "t"
    elif kind == "padded-constant":  # 20 MiB of ones from a few bytes, in a file padded by 1 MB of doc_string
        doc = "p" * (1 << 20)
    elif kind == "unused-initializer-constant":  # the same, padded by a 1 MB initializer nothing reads
        zeros("pad", [1 << 18])
    nodes.append(h.make_node("ReduceMean", [feat], ["y0"], axes=[2, 3], keepdims=0))
    if kind in ("padded-constant", "unused-initializer-constant"):
        inits.append(h.make_tensor("shape", T.INT64, [1], [5 << 20]))
        nodes += [
            h.make_node("ConstantOfShape", ["shape"], ["big"], value=h.make_tensor("v", f, [1], [1.0])),
            h.make_node("ReduceSum", ["big"], ["z"], keepdims=0),
            h.make_node("Add", ["y0", "z"], ["y"]),
        ]
    elif kind == "scalar-output":
        nodes.append(h.make_node("ReduceMean", ["y0"], ["y"], keepdims=0))
    elif kind == "not-per-image":  # (1, 3): the mean over the batch
        nodes.append(h.make_node("ReduceMean", ["y0"], ["y"], axes=[0], keepdims=1))
    elif kind == "activations-out":
        nodes.append(h.make_node("Identity", [feat], ["y"]))
    else:
        nodes.append(h.make_node("Identity", ["y0"], ["y"]))
    g = h.make_graph(
        nodes, "g", [x_in, *extra_inputs], [h.make_tensor_value_info("y", f, out_dims)], inits, doc_string=doc
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 23 else 8
    return m.SerializeToString()


REFUSALS = {
    "conv-transpose": "operator 'ConvTranspose' is not one binexport runs; allowed: Abs, Add,",
    "attention": "operator 'Attention' is not one binexport runs",
    "huge-conv-kernel": "Conv node 't' needs 110.3 MiB of scratch per image",
    "100k-nodes": "has 100,002 nodes, more than the 4,096",
    "too-deep": "is 2,049 nodes deep, more than the 2,048",
    "scalar-output": r"output 'y' has shape \(\); expected logits of shape \(N, classes\)",
    "not-per-image": r"output 'y' has shape \(1, 3\)",
    "activations-out": r"output 'y' has shape \(N, 3, 32, 32\)",
    "float-nhwc-input": r"element type 1 of shape \(\?, 32, 32, 3\); expected an image batch",
    "two-inputs": "has 2 inputs and 1 outputs",
    "padded-constant": "more than the 16.0 MiB a graph holding 8 bytes of weights may make",
    "unused-initializer-constant": "more than the 16.0 MiB a graph holding 8 bytes of weights may make",
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_each_hostile_graph_is_refused_before_any_session(kind: str) -> None:
    from binexport.formats.onnx.bounds import check_onnx_bounds

    with pytest.raises(InputError, match=REFUSALS[kind]) as e:
        check_onnx_bounds(graph(kind))
    assert "\n" not in str(e.value)


def test_the_same_graph_without_its_hostile_part_passes() -> None:
    """The oracle: each refusal above is for the hostile part, not for the graph around it."""
    from binexport.formats.onnx.bounds import check_onnx_bounds

    b = check_onnx_bounds(graph("none"))
    assert (b.nodes, b.depth, b.weight_bytes, b.workspace_bytes) == (2, 2, 0, 0)


def test_every_operator_binexport_writes_is_allowed_and_documented() -> None:
    from helpers import tiny_model

    from binexport.formats.onnx import WEIGHTS, build_model
    from binexport.formats.onnx.int8 import required_ranges
    from binexport.formats.onnx.ops import ALLOWED_OPS

    model = tiny_model(depth=14, width=2)
    ranges = {n: (-3.0, 3.0) for n in required_ranges(model)}
    used = {
        n.op_type
        for w in WEIGHTS
        for inside in (False, True)
        for n in build_model(model, w, normalize_inside=inside, int8_ranges=ranges if w == "int8" else None).graph.node
    }
    assert used <= ALLOWED_OPS and {"Conv", "Gather", "DequantizeLinear"} <= used
    safety = (HERE.parent / "docs" / "safety.md").read_text()
    listed = safety.split("<!-- allowed-ops -->")[1].split("<!-- /allowed-ops -->")[0]
    assert set(re.findall(r"`(\w+)`", listed)) == ALLOWED_OPS
    assert not {"ConvTranspose", "Attention", "LSTM", "Einsum", "Loop"} & ALLOWED_OPS


def test_a_torch_onnx_export_of_the_port_is_allowed() -> None:
    """Another exporter's WRN (torch.onnx, TorchScript exporter): Shape, ConstantOfShape, Constant, ReduceMean."""
    import io

    import torch
    from helpers import tiny_model

    from binexport.formats.onnx.bounds import check_onnx_bounds
    from binexport.runtimes.torch_ref import TorchRuntime

    net = TorchRuntime(tiny_model(depth=8, width=1), "cpu", 1).net
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.zeros(2, 3, 32, 32),), buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}}
        )
    b = check_onnx_bounds(buf.getvalue())
    assert b.nodes > 10 and b.workspace_bytes > 0


def test_padding_a_graph_buys_no_memory() -> None:
    """Class 10: padded or not, binexport's own graph gets the same allowance (its weights), not its length."""
    import onnx
    from helpers import tiny_model

    from binexport.formats.onnx import build_model
    from binexport.formats.onnx.bounds import allowances, check_onnx_bounds

    m = build_model(tiny_model(depth=8, width=1), "1-bit")
    plain = check_onnx_bounds(m.SerializeToString())
    m.graph.doc_string = "p" * (1 << 20)
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(1 << 18, np.float32), "unused"))
    padded = check_onnx_bounds(m.SerializeToString())
    assert padded.file_bytes > plain.file_bytes + (2 << 20)
    assert padded.weight_bytes == plain.weight_bytes and 0 < plain.weight_bytes <= plain.file_bytes
    assert allowances(padded.weight_bytes) == allowances(plain.weight_bytes)


def test_sub_byte_weights_are_sized_packed() -> None:
    """int2 weights (opset 25 DequantizeLinear) hold ceil(n / 4) bytes; a lying one is refused."""
    from onnx import TensorProto as T
    from onnx import helper as h

    from binexport.formats.onnx.bounds import check_onnx_bounds

    def conv_int2(values: int) -> bytes:
        w = h.make_tensor("wq", T.INT2, [3, 3, 3, 3], np.zeros(21, np.uint8).tobytes(), raw=True)
        w.raw_data = w.raw_data[:values]
        nodes = [
            h.make_node("DequantizeLinear", ["wq", "sc"], ["w"]),
            h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            h.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3], keepdims=0),
        ]
        g = h.make_graph(
            nodes,
            "g",
            [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])],
            [h.make_tensor_value_info("y", T.FLOAT, None)],
            [w, h.make_tensor("sc", T.FLOAT, [], [0.5])],
        )
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 25)])
        m.ir_version = 11
        return m.SerializeToString()

    b = check_onnx_bounds(conv_int2(21))
    assert b.weight_bytes == 21 + 4 and b.workspace_bytes == 3 * 9 * 1024 * 4
    with pytest.raises(InputError, match="declares shape \\[3, 3, 3, 3\\] \\(21 bytes\\) but holds 20"):
        check_onnx_bounds(conv_int2(20))


def test_a_crashing_openvino_compile_is_one_line() -> None:
    """The compile runs apart: a child killed by SIGSEGV is a message naming the signal, not our death."""
    from binexport.runtimes.openvino_apart import compile_apart

    segv = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(InputError, match=r"OpenVINO crashed compiling it \(SIGSEGV, in a separate process\)"):
        compile_apart("m.onnx", command=segv)
    fails = [
        sys.executable,
        "-c",
        "import sys; print('first', file=sys.stderr); print('m.onnx: bad', file=sys.stderr); sys.exit(2)",
    ]
    with pytest.raises(InputError, match="^m.onnx: bad$"):
        compile_apart("m.onnx", command=fails)


#: Runs its arguments as a child and writes that child's wait status and own peak RSS to the file named in argv[1].
#: A child forked straight from pytest would inherit pytest's peak as its ``ru_maxrss`` (the kernel keeps the
#: forked memory's high-water mark across exec), so a small launcher forks it instead.
LAUNCHER = r"""
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{status} {usage.ru_maxrss}")
"""


def _cli(args: list[str], tmp_path: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS bytes) of ``binexport ARGS`` in a fresh process, its own rusage."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "child-status"
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(out), sys.executable, "-m", "binexport.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    status, maxrss = (int(x) for x in out.read_text().split())
    return os.waitstatus_to_exitcode(status), proc.stderr.decode(errors="replace"), maxrss * 1024


CLI_CASES = [
    ("conv-transpose", "verify", "ort"),
    ("conv-transpose", "bench", "ort"),
    ("attention", "verify", "openvino"),
    ("100k-nodes", "verify", "openvino"),
    ("100k-nodes", "bench", "all"),
    ("scalar-output", "verify", "ort"),
    ("scalar-output", "verify", "openvino"),
    ("padded-constant", "verify", "ort"),
]


@pytest.mark.parametrize(("kind", "verb", "runtime"), CLI_CASES)
def test_the_cli_refuses_in_one_line_within_the_bound(
    kit: dict[str, Any], tmp_path: Path, kind: str, verb: str, runtime: str
) -> None:
    if runtime != "ort":
        pytest.importorskip("openvino")
    g = write(tmp_path / f"{kind}.onnx", graph(kind))
    if verb == "verify":
        args = ["verify", str(g), "--reference", str(kit["ckpt"]), "--images", str(kit["imgs"])]
    else:
        args = ["bench", str(g), "--seconds", "0.1"]
    code, err, peak = _cli([*args, "--device", "cpu", "--runtime", runtime], tmp_path)
    assert code == 2, (code, err[-2000:])
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[-2000:]
    assert re.search(REFUSALS[kind], err) and err.startswith(f"binexport: error: {g}: "), err
    print(f"PEAK {kind} {verb} {runtime} {peak / 2**20:.0f} MiB")
    assert peak < REFUSED_PEAK_BYTES, peak


CAPPED = r"""
import sys
import numpy as np
from binexport.runtimes.memory import ADDRESS_SLACK_BYTES, address_space, limit_address_space
bounds = {"const_total_bytes": 0, "workspace_bytes": 0, "image_total_bytes": 1 << 20}
limit_address_space(bounds, 1, 1, "cpu", address_space())
try:
    np.ones(ADDRESS_SLACK_BYTES + (2 << 30), np.uint8)
except MemoryError:
    print("refused")
"""


def test_the_bench_worker_caps_its_address_space_at_the_graphs_bound() -> None:
    """A worker's RLIMIT_AS: an allocation past the bound plus the slack fails inside it, as a MemoryError."""
    proc = subprocess.run([sys.executable, "-c", CAPPED], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stderr[-2000:]
