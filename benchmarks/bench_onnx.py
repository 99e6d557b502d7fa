"""to-onnx benchmarks, binexport side by side with the obvious alternative, in one run.

    python benchmarks/bench_onnx.py [--section export|session|throughput|all] [--reps N]

* export: ``export_onnx`` on WRN-20-10 (build, checker, ORT-vs-PyTorch validation) vs ``torch.onnx.export``
  (legacy exporter; fixed batch, float32 only, BatchNorm folded into the binarised weights).
* session: ONNX Runtime session creation for the packed designs (binexport/formats/onnx/designs.py) vs the float32
  file: a fresh process, and a second session in the same process; logits compared bit for bit.
* throughput: ORT CPU (float32 and packed files) vs PyTorch eager (``WRNReference``), batch 1 and 64,
  WRN-20-1 and WRN-20-10, each in its own process so its peak RSS is its own.

Uses the published WRN-20-10 from ../shared/realdata when present, else a synthetic one. Prints Markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "realdata" / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mib() -> float:
    """Peak RSS of this process: VmHWM, since ru_maxrss keeps the parent's peak across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_session(path: str, inference_runs: int) -> dict:
    """Session creation, fresh then warm, batch-1 latency and a hash of the logits."""
    import onnxruntime as ort

    def make() -> tuple[object, float, float]:
        o = ort.SessionOptions()
        o.log_severity_level = 3
        t, c = time.perf_counter(), time.process_time()
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        return s, time.perf_counter() - t, time.process_time() - c

    s, fresh, fresh_cpu = make()
    _, warm, warm_cpu = make()
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    y = s.run(None, {"input": x})[0]
    times = []
    for _ in range(inference_runs):
        t = time.perf_counter()
        s.run(None, {"input": x[:1]})
        times.append(time.perf_counter() - t)
    return {
        "fresh": fresh,
        "warm": warm,
        "fresh_cpu": fresh_cpu,
        "warm_cpu": warm_cpu,
        "b1": statistics.median(times),
        "rss": _rss_mib(),
        "logits": hashlib.sha256(y.tobytes()).hexdigest(),
    }


def child_throughput(kind: str, path: str, runs: str) -> dict:
    """Images per second at each batch size (median of runs after a warm-up), and peak RSS."""
    plan = [tuple(map(int, r.split("x"))) for r in runs.split(",")]  # "1x20,64x3": batch x runs
    if kind.startswith("torch"):
        import torch

        if kind == "torch1":
            torch.set_num_threads(1)

        from binexport import load
        from binexport.runtimes.torch_ref import WRNReference

        net = WRNReference(load(path)).eval()

        def run(x: np.ndarray) -> None:
            with torch.inference_mode():
                net(torch.from_numpy(x))

        threads = torch.get_num_threads()
    else:
        from binexport.runtimes.ort import open_session

        session = open_session(path)

        def run(x: np.ndarray) -> None:
            session.session.run(None, {"input": x})

        threads = 0
    out: dict[str, object] = {"threads": threads}
    for batch, n in plan:
        x = np.random.default_rng(0).normal(0, 1, (batch, 3, 32, 32)).astype(np.float32)
        for _ in range(3 if batch == 1 else 1):  # oneDNN and ORT settle in over the first calls
            run(x)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t)
        out[f"b{batch}"] = batch / statistics.median(times)
    out["rss"] = _rss_mib()
    return out


def _wrn(folder: Path, width: float) -> Path:
    """A packed checkpoint: the published one for WRN-20-10 when present, else synthetic."""
    if width == 10 and REAL.is_file():
        return REAL
    from binexport.data.synth import make_arch, random_state
    from binexport.formats import packed
    from binexport.model import Model, binarize

    arch = make_arch(20, width, 100)
    path = folder / f"wrn20-{width:g}.packed.pth.tar"
    path.write_bytes(packed.write(binarize(Model(arch, False, random_state(arch, 0)))))
    return path


def bench_export(folder: Path, reps: int) -> None:
    import warnings

    import torch

    from binexport import load
    from binexport.runtimes.torch_ref import WRNReference
    from binexport.verbs.export import RANDOM_IMAGES, export_onnx

    src = _wrn(folder, 10)
    print(
        f"\n### Export time, WRN-20-10 ({'published checkpoint' if src == REAL else 'synthetic'}), "
        f"median of {reps}, torch already imported\n"
    )
    print(
        f"| exporter | weights | file | load | build | checker | ORT + PyTorch validation ({RANDOM_IMAGES} images) "
        "| total |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for weights in ("packed", "float32", "float16"):
        rs = [export_onnx(src, folder / f"e-{weights}.onnx", weights=weights, force=True) for _ in range(reps)]
        med = {k: statistics.median(r.timings[k] for r in rs) for k in rs[0].timings}
        total = statistics.median(r.seconds for r in rs)
        print(
            f"| binexport to-onnx | {weights} | {rs[0].output_bytes / 1e6:.2f} MB | {med['load']:.2f} s | "
            f"{med['build']:.2f} s | {med['checker']:.2f} s | {med['runtime']:.2f} s | {total:.2f} s |"
        )
    net = WRNReference(load(src)).eval()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (torch.zeros(1, 3, 32, 32),), str(folder / "legacy.onnx"), dynamo=False, opset_version=18
            )
        times.append(time.perf_counter() - t)
    size = (folder / "legacy.onnx").stat().st_size
    print(
        f"| torch.onnx.export (legacy, batch 1 fixed, no validation) | float32 | {size / 1e6:.2f} MB | - | - | - "
        f"| - | {statistics.median(times):.2f} s |"
    )


def bench_session(folder: Path, reps: int) -> None:
    from binexport import load
    from binexport.formats import onnx as fmt
    from binexport.formats.onnx.designs import DESIGNS

    src = _wrn(folder, 10)
    model = load(src)
    files = {"float32": folder / "s-float32.onnx"}
    t = time.perf_counter()
    files["float32"].write_bytes(fmt.write(model, weights="float32"))
    build = {"float32": time.perf_counter() - t}
    for name, packer in DESIGNS.items():
        t = time.perf_counter()
        files[name] = folder / f"s-{name}.onnx"
        files[name].write_bytes(fmt.build_model(model, _packer=packer).SerializeToString())
        build[name] = time.perf_counter() - t
    res: dict[str, list[dict]] = {k: [] for k in files}
    for _ in range(reps):  # interleaved, so load on the shared machine hits every design alike
        for name, path in files.items():
            res[name].append(_child(["session", str(path), "15"]))
    keys = ("fresh", "warm", "fresh_cpu", "warm_cpu", "b1", "rss")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in res.items()}
    base = med["float32"]
    print(f"\n### ONNX Runtime session creation, WRN-20-10, CPU, median of {reps} processes\n")
    print("Wall time, and in brackets the process's CPU time (less sensitive to other jobs on a shared machine).\n")
    print(
        "| graph | file | build | session, fresh process | vs float32 | second session | vs float32 "
        "| batch-1 latency | logits = float32 | peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, m in med.items():
        same = all(r["logits"] == res["float32"][0]["logits"] for r in res[name])
        label = (
            "float32 (plain weights)"
            if name == "float32"
            else f"packed: {name}" + (" (binexport's choice)" if name == "lut8" else "")
        )
        print(
            f"| {label} | {files[name].stat().st_size / 1e6:.2f} MB | {build[name]:.2f} s "
            f"| {m['fresh']:.3f} s ({m['fresh_cpu']:.3f} s) "
            f"| {m['fresh'] / base['fresh']:.2f}x ({m['fresh_cpu'] / base['fresh_cpu']:.2f}x) "
            f"| {m['warm']:.3f} s ({m['warm_cpu']:.3f} s) "
            f"| {m['warm'] / base['warm']:.2f}x ({m['warm_cpu'] / base['warm_cpu']:.2f}x) "
            f"| {m['b1'] * 1e3:.1f} ms | {'bit-identical' if same else 'DIFFERENT'} | {m['rss']:.0f} MiB |"
        )


def bench_throughput(folder: Path, rounds: int) -> None:
    from binexport import load
    from binexport.formats import onnx as fmt

    print(
        f"\n### CPU throughput (images/s; per process: a warm-up of 3 calls (1 at batch 64), then the median of "
        f"its runs; median of {rounds} interleaved processes) and peak RSS\n"
    )
    print("| network | runtime | batch 1 | batch 64 | vs the faster PyTorch (1 / 64) | peak RSS |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    torch_name = "PyTorch eager (WRNReference)"
    torch1_name = "PyTorch eager, 1 thread"
    for width, runs in ((1, "1x30,64x4"), (10, "1x6,64x1")):
        src = _wrn(folder, width)
        model = load(src)
        jobs = {
            torch_name: ["throughput", "torch", str(src), runs],
            torch1_name: ["throughput", "torch1", str(src), runs],
        }
        for weights in ("float32", "packed"):
            path = folder / f"t-{width}-{weights}.onnx"
            path.write_bytes(fmt.write(model, weights=weights))
            jobs[f"ONNX Runtime, {weights} file"] = ["throughput", "ort", str(path), runs]
        got: dict[str, list[dict]] = {k: [] for k in jobs}
        for _ in range(rounds):  # interleaved: the machine's load hits every runtime alike
            for name, job in jobs.items():
                got[name].append(_child(job))
        med = {k: {m: statistics.median(r[m] for r in rs) for m in ("b1", "b64", "rss")} for k, rs in got.items()}
        best = {b: max(med[torch_name][b], med[torch1_name][b]) for b in ("b1", "b64")}
        for name, r in med.items():
            print(
                f"| WRN-20-{width} | {name} | {r['b1']:.1f} | {r['b64']:.1f} | {r['b1'] / best['b1']:.2f}x / "
                f"{r['b64'] / best['b64']:.2f}x | {r['rss']:.0f} MiB |"
            )


def _machine() -> None:
    import os
    import platform

    import onnx
    import onnxruntime
    import torch

    from binexport.runtimes.cpu import cpu_info

    cpu = cpu_info().name
    print(
        f"Machine: {cpu}, {os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )


def bench_same_speed(folder: Path, reps: int) -> None:
    """packed vs float32 in one process, runs alternated, plus the graphs ONNX Runtime actually runs."""
    from collections import Counter

    import onnx
    import onnxruntime as ort

    from binexport import load
    from binexport.formats import onnx as fmt

    print("\n### packed vs float32 file on ONNX Runtime, one process, runs alternated (medians)\n")
    print("| network | batch | float32 | packed | packed / float32 | optimised graphs |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for width in (1, 10):
        model = load(_wrn(folder, width))
        sessions, graphs = {}, {}
        for weights in ("float32", "packed"):
            path = folder / f"same-{width}-{weights}.onnx"
            path.write_bytes(fmt.write(model, weights=weights))
            o = ort.SessionOptions()
            o.log_severity_level = 3
            o.optimized_model_filepath = str(folder / f"same-{width}-{weights}.opt.onnx")
            sessions[weights] = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
            g = onnx.load(o.optimized_model_filepath).graph
            graphs[weights] = (
                Counter(n.op_type for n in g.node),
                sorted(hashlib.sha256(onnx.numpy_helper.to_array(t).tobytes()).hexdigest() for t in g.initializer),
            )
        same = "same operators, same initializer bytes" if graphs["float32"] == graphs["packed"] else "DIFFERENT"
        for batch in (1, 64):
            x = np.random.default_rng(0).normal(0, 1, (batch, 3, 32, 32)).astype(np.float32)
            n = {(1, 1): 30 * reps, (1, 64): 5 * reps, (10, 1): 5 * reps, (10, 64): reps}[width, batch]
            times: dict[str, list[float]] = {"float32": [], "packed": []}
            for s in sessions.values():
                s.run(None, {"input": x})
            for _ in range(n):
                for weights, s in sessions.items():
                    t = time.perf_counter()
                    s.run(None, {"input": x})
                    times[weights].append(time.perf_counter() - t)
            f, p = (statistics.median(times[k]) for k in ("float32", "packed"))
            print(
                f"| WRN-20-{width} | {batch} | {batch / f:.1f} img/s | {batch / p:.1f} img/s | {f / p:.3f} | {same} |"
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, *rest = sys.argv[2:]
        if what == "session":
            print(json.dumps(child_session(rest[0], int(rest[1]))))
        else:
            print(json.dumps(child_throughput(*rest)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=["export", "session", "throughput", "all"], default="all")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    _machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if a.section in ("export", "all"):
            bench_export(folder, max(1, a.reps // 2))
        if a.section in ("session", "all"):
            bench_session(folder, a.reps)
        if a.section in ("throughput", "all"):
            bench_throughput(folder, max(1, a.reps // 2))
            bench_same_speed(folder, max(1, a.reps // 2))


if __name__ == "__main__":
    main()
