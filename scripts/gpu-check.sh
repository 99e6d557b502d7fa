#!/usr/bin/env bash
# Everything that needs a GPU, in one call, on a fresh GPU machine after `make install`, from the repository root:
#   bash scripts/gpu-check.sh OUT_DIR [REALDATA]
# Exports the real published WRN-20-10 (REALDATA/seed-checkpoint, default ../shared/realdata) to float32, float16,
# 1-bit and int8 ONNX, then writes to OUT_DIR:
#   verify-cuda.json      verify --device cuda of the four files on the 500 real CIFAR-100 test images (CUDA provider)
#   verify-tensorrt.json  the same files on ONNX Runtime's TensorRT provider, where its libraries are installed
#   bench-cuda.json       bench --device cuda of the four files and the packed checkpoint (batch 64)
#   pytest-cuda.txt       the tests marked cuda;  gpu.txt: the GPU, driver and library versions;  *.log: each step
# Exit 0 when every step passed; otherwise the number of failed steps (each step still runs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash scripts/gpu-check.sh OUT_DIR [REALDATA]}
REAL=${2:-../shared/realdata}
PY=${PYTHON:-python3}
PACKED="$REAL/seed-checkpoint/wrn20-10-1bit-packed.pth.tar"
DATA="$REAL/cifar100-partial"
mkdir -p "$OUT/models"
if [ ! -f "$PACKED" ] || [ ! -d "$DATA/cifar-100-python" ]; then
    echo "gpu-check: expected $PACKED and $DATA/cifar-100-python (the project's real data); pass its folder" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu-check: PyTorch sees no CUDA device here; run it on a GPU machine (after make install)" >&2
    exit 2
fi
BX=("$PY" -m binexport.cli)
failed=0
step() {  # step NAME COMMAND...: runs it, logs its output to OUT/NAME.log, counts a failure
    local name=$1; shift
    echo "== $name: $*"
    if "$@" >"$OUT/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (exit $?): see $OUT/$name.log"; failed=$((failed + 1)); fi
}
{ nvidia-smi; "$PY" -c 'import torch, onnxruntime as o; print("torch", torch.__version__, "cuda", torch.version.cuda,
  torch.cuda.get_device_name(0)); print("onnxruntime", o.__version__, o.get_available_providers())'; } >"$OUT/gpu.txt" 2>&1
M="$OUT/models"
step export-float32 "${BX[@]}" to-onnx "$PACKED" -o "$M/wrn-float32.onnx" --weights float32 --force
step export-float16 "${BX[@]}" to-onnx "$PACKED" -o "$M/wrn-float16.onnx" --weights float16 --force
step export-1bit "${BX[@]}" to-onnx "$PACKED" -o "$M/wrn-1bit.onnx" --weights 1-bit --force
step export-int8 "${BX[@]}" to-onnx "$PACKED" -o "$M/wrn-int8.onnx" --weights int8 --calibrate CIFAR100 \
    --data-root "$DATA" --force
FILES=("$M/wrn-float32.onnx" "$M/wrn-float16.onnx" "$M/wrn-1bit.onnx" "$M/wrn-int8.onnx")
step verify-cuda "${BX[@]}" verify "$PACKED" "${FILES[@]}" --device cuda --dataset CIFAR100 --data-root "$DATA" \
    --json-out "$OUT/verify-cuda.json"
if "$PY" -c 'import sys, onnxruntime as o; sys.exit("TensorrtExecutionProvider" not in o.get_available_providers())' \
    && { ldconfig -p 2>/dev/null | grep -q libnvinfer || "$PY" -c 'import tensorrt' 2>/dev/null; }; then
    step verify-tensorrt "$PY" scripts/gpu_tensorrt.py "$PACKED" "$DATA" "$OUT/verify-tensorrt.json" "${FILES[@]}"
else
    echo "== verify-tensorrt: skipped: ONNX Runtime's TensorRT provider or TensorRT's libraries (libnvinfer) are not installed" \
        | tee "$OUT/verify-tensorrt.log"
fi
step bench-cuda "${BX[@]}" bench "${FILES[@]}" "$PACKED" --device cuda --batch-size 64 --json-out "$OUT/bench-cuda.json"
step pytest-cuda "$PY" -m pytest -q -m cuda tests/runtimes/test_cuda.py
cp "$OUT/pytest-cuda.log" "$OUT/pytest-cuda.txt" 2>/dev/null
echo "gpu-check: $failed step(s) failed; reports in $OUT"
exit "$failed"
