"""ONNX files on ONNX Runtime's TensorRT provider, against the PyTorch reference (called by scripts/gpu-check.sh).

    python scripts/gpu_tensorrt.py PACKED DATA_ROOT OUT.json FILE.onnx...

binexport's own sessions use the CUDA provider (runtimes/ort.py); this script asks for TensorRT first, refuses a
session where TensorRT did not take the graph's first place, and holds each file to its weights' tolerance
(check.compare), as verify does. Exit 0 when every file passed, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(packed: str, data_root: str, out: str, files: list[str]) -> int:
    import onnxruntime as ort

    from binexport import check
    from binexport.data import load_test_set, normalize
    from binexport.runtimes import open_artifact, select_input
    from binexport.runtimes.ort import OrtRuntime

    ds = load_test_set(dataset="CIFAR100", data_root=data_root)
    nhwc, labels = ds.images, ds.labels
    nchw = normalize(nhwc)
    ref = open_artifact(packed, "cuda")
    ref_logits = ref.session.logits(select_input(ref.session.input_kind, nhwc, nchw), 256)
    rows, ok = [], True
    for f in files:
        meta = open_artifact(f, "cpu")  # weights and input kind from the file's metadata
        trt = {
            "trt_fp16_enable": meta.weights == "float16",
            "trt_int8_enable": meta.weights == "int8",
            "trt_engine_cache_enable": False,
        }
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            s = ort.InferenceSession(
                f, opts, providers=[("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", {"use_tf32": "0"})]
            )
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own error types; reported per file, not raised
            rows.append({"path": f, "passed": False, "error": " ".join(str(e).split())[:300]})
            ok = False
            continue
        used = s.get_providers()
        rt = OrtRuntime(s, used[0], "cuda")
        logits, secs = rt.timed_logits(select_input(rt.input_kind, nhwc, nchw), 64)
        c = check.compare(logits, ref_logits, meta.weights, labels=labels, what=Path(f).name)
        passed = c.passed and used[0] == "TensorrtExecutionProvider"
        ok &= passed
        rows.append(
            {
                "path": f,
                "weights": meta.weights,
                "providers": used,
                "images": c.images,
                "top1_correct": c.top1_correct,
                "reference_top1_correct": c.reference_top1_correct,
                "agreement": c.agreement,
                "max_abs_logit_diff": c.max_abs_logit_diff,
                "images_per_s": c.images / secs if secs else 0.0,
                "tolerance": c.tolerance.to_dict(),
                "passed": passed,
                "problems": c.problems,
            }
        )
        print(
            f"{Path(f).name}: {used[0]}, top-1 {c.top1_correct}/{c.images}, max diff {c.max_abs_logit_diff}, "
            f"{'PASS' if passed else 'FAIL'}"
        )
    Path(out).write_text(
        json.dumps(
            {"schema_version": 1, "data": ds.name, "images": len(labels), "reference": packed, "rows": rows}, indent=2
        )
        + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
