#!/usr/bin/env bash
# Installs binexport, its test tools and the openvino extra into the current Python, CPU build of torch first where there is no GPU.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 10))' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "$PY" -m pip install -q 'torch>=2.10,<3'
    else
        # No GPU: take the CPU build (this machine keeps torch 2.13.0's CPU wheel on disk; elsewhere pip
        # falls back to the default build, which also runs on the CPU).
        "$PY" -m pip install -q 'torch==2.13.0' || "$PY" -m pip install -q 'torch>=2.10,<3'
    fi
fi
# the test extra pins the lint tools too (ruff, mypy: `make lint`); openvino: the optional second runtime
"$PY" -m pip install -q -e '.[test,openvino]'
"$PY" -m pip install -q --no-deps 'pytorchcv==0.0.74'  # tests/formats/test_pytorchcv.py's oracle: needs torch only
