"""verify's images/s against each runtime's raw batch throughput on the same model, side by side.

For each model: a synthetic CIFAR-100 test file in torchvision's layout, a
packed checkpoint and its packed ONNX export. Then, alternating, ``repeats``
times: the raw loops (``WRNReference`` over pre-made torch batches; ONNX
Runtime ``session.run`` over pre-made numpy batches, both after the same small
warm-up) and one ``verify([packed, onnx])`` call, whose reference row is the
torch throughput and whose ONNX row the ORT throughput. The target is
verify >= 0.9x raw. Each figure is the best of the repeats (medians beside the
ratios): on a shared machine other load only ever slows a run down. Also reported: verify's one-off data cost (unpickle +
normalise) and its whole wall time, and, robust to other load on a shared
machine because both sides are timed in the same window, the share of verify's
timed loop spent inside the runtime's own call (torch forward, ORT batch run):
what is left is the pipeline's overhead.

Usage: python benchmarks/bench_verify.py [--models 20-1:3000,20-10:256] [--batch-size 128] [--repeats 7]
       [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from binexport import Model, binarize, formats, verify
from binexport.data import load_test_set, normalize
from binexport.data.synth import make_arch, random_state, write_cifar_testset
from binexport.runtimes import resolve_device
from binexport.runtimes.ort import open_session

WARMUP = 2


def raw_torch(model: Model, x: np.ndarray, bs: int, dev: str) -> float:
    """Images/s of the bare forward over batches already in place (on the GPU where there is one)."""
    import torch

    from binexport.runtimes.torch_ref import WRNReference

    net = WRNReference(model).to(dev).eval()
    xt = torch.from_numpy(x).to(dev)
    batches = [xt[i : i + bs] for i in range(0, len(xt), bs)]
    with torch.inference_mode():
        net(xt[:WARMUP])
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            net(b)
        if dev == "cuda":
            torch.cuda.synchronize()
    return len(x) / (time.perf_counter() - t0)


def raw_ort(path: Path, x: np.ndarray, bs: int, dev: str) -> float:
    """Images/s of bare ``session.run`` over pre-made numpy batches."""
    s = open_session(str(path), dev)
    batches = [np.ascontiguousarray(x[i : i + bs]) for i in range(0, len(x), bs)]
    s.session.run(None, {s.input_name: x[:WARMUP]})
    t0 = time.perf_counter()
    for b in batches:
        s.session.run(None, {s.input_name: b})
    return len(x) / (time.perf_counter() - t0)


@contextmanager
def timed_calls(cls: type, attr: str, log: list[float], dev: str) -> Iterator[None]:
    """Record the seconds of every call of ``cls.attr`` (the runtime's own work) while verify runs."""
    orig = getattr(cls, attr)

    def wrapper(self: object, *a: object) -> object:
        t0 = time.perf_counter()
        out = orig(self, *a)
        if dev == "cuda":
            import torch

            torch.cuda.synchronize()
        log.append(time.perf_counter() - t0)
        return out

    setattr(cls, attr, wrapper)
    try:
        yield
    finally:
        setattr(cls, attr, orig)


def bench(depth: int, width: float, n: int, bs: int, repeats: int, dev: str, tmp: Path) -> dict[str, object]:
    import onnxruntime

    from binexport.runtimes.torch_ref import WRNReference

    arch = make_arch(depth, width, 100)
    model = binarize(Model(arch, False, random_state(arch, 0)))
    rng = np.random.default_rng(0)
    root = tmp / f"data-{arch.name}"
    write_cifar_testset(root, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, n))
    packed, onnx = tmp / f"{arch.name}.packed.pth.tar", tmp / f"{arch.name}.onnx"
    packed.write_bytes(formats.get("packed").write(model))
    onnx.write_bytes(formats.get("onnx").write(model))
    t0 = time.perf_counter()
    x = normalize(load_test_set(dataset="CIFAR100", data_root=root).images)
    data_s = time.perf_counter() - t0
    res: dict[str, list[float]] = {
        k: [] for k in ("raw_torch", "verify_torch", "raw_ort", "verify_ort", "wall", "share_torch", "share_ort")
    }
    for _ in range(repeats):
        res["raw_torch"].append(raw_torch(model, x, bs, dev))
        res["raw_ort"].append(raw_ort(onnx, x, bs, dev))
        fwd: list[float] = []
        ort: list[float] = []
        t0 = time.perf_counter()
        with timed_calls(WRNReference, "forward", fwd, dev), timed_calls(onnxruntime.InferenceSession, "run", ort, dev):
            r = verify(
                [packed, onnx],
                dataset="CIFAR100",
                data_root=root,
                device=dev,
                batch_size=bs,
                progress=lambda label, done, total: None,
            )  # as the CLI: a callback per batch
        res["wall"].append(time.perf_counter() - t0)
        if not r.passed:
            raise SystemExit(f"verify failed: {r.failures}")
        res["verify_torch"].append(r.reference.images_per_s)
        res["verify_ort"].append(r.artifacts[1].images_per_s)
        # the first call of each is verify's untimed warm-up; the rest fill its timed loop
        res["share_torch"].append(sum(fwd[1:]) / r.reference.seconds)
        res["share_ort"].append(sum(ort[1:]) / r.artifacts[1].seconds)
    best = {k: (min(v) if k == "wall" else max(v)) for k, v in res.items()}
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "model": arch.name,
        "images": n,
        "batch": bs,
        "device": dev,
        "provider": r.artifacts[1].provider,
        "data_s": data_s,
        "repeats": repeats,
        **best,
        "torch_ratio": best["verify_torch"] / best["raw_torch"],
        "ort_ratio": best["verify_ort"] / best["raw_ort"],
        "torch_ratio_median": med["verify_torch"] / med["raw_torch"],
        "ort_ratio_median": med["verify_ort"] / med["raw_ort"],
        "share_torch_median": med["share_torch"],
        "share_ort_median": med["share_ort"],
        "share_torch_min": min(res["share_torch"]),
        "share_ort_min": min(res["share_ort"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="20-1:3000,20-10:256", help="depth-width:images, comma-separated")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            dw, n = spec.split(":")
            depth, width = dw.split("-")
            rows.append(bench(int(depth), float(width), int(n), args.batch_size, args.repeats, dev, Path(tmp)))
            print(rows[-1], file=sys.stderr)
    print(
        "| model | images | device / ORT provider | data load + normalise | raw torch | verify torch | ratio "
        "(median) | raw ORT | verify ORT | ratio (median) | verify() wall |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['images']:,} | {r['device']} / {r['provider']} | {r['data_s']:.2f} s "
            f"| {r['raw_torch']:,.0f} img/s | {r['verify_torch']:,.0f} img/s "
            f"| {r['torch_ratio']:.2f}x ({r['torch_ratio_median']:.2f}x) "
            f"| {r['raw_ort']:,.0f} img/s | {r['verify_ort']:,.0f} img/s "
            f"| {r['ort_ratio']:.2f}x ({r['ort_ratio_median']:.2f}x) | {r['wall']:.1f} s |"
        )
    print()
    print(
        "| model | share of verify's timed loop inside the torch forward: median (min) | same, inside ORT's "
        "session.run: median (min) |"
    )
    print("| --- | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['share_torch_median']:.4f} ({r['share_torch_min']:.4f}) "
            f"| {r['share_ort_median']:.4f} ({r['share_ort_min']:.4f}) |"
        )


if __name__ == "__main__":
    main()
