#!/usr/bin/env bash
# Builds binexport's wheel, installs it into a fresh virtual env and runs `binexport demo` there, from a folder
# outside the repository, so the demo can only use what the wheel ships (model, test and calibration images).
#
# Fast path: the venv gets no copy of torch & co. A `.pth` file puts the base interpreter's site-packages
# behind the venv's own, after the wheel is installed; a `.pth` line adds a folder without running the `.pth`
# files inside it, so an editable install of binexport there stays invisible (checked below: binexport must
# import from the venv). Where the base interpreter lacks a dependency, pip installs it into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/binexport-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
expected=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)

"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null
WHEEL=$(ls "$WORK"/dist/binexport-*.whl)
echo "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"
for f in binexport/data/demo/TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat \
         binexport/data/demo/cifar-10-batches-py/test_batch binexport/data/demo/cifar-10-batches-py/data_batch_4 \
         binexport/data/demo/LICENSE-McDonnell; do
    "$PY" -c 'import sys, zipfile; sys.exit(sys.argv[2] not in zipfile.ZipFile(sys.argv[1]).namelist())' "$WHEEL" "$f" \
        || { echo "check-wheel: $f is missing from the wheel" >&2; exit 1; }
done

"$PY" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
# the wheel first, while the venv sees nothing else (pip must not touch the base interpreter's binexport)
"$PY" -m pip --python "$VPY" install -q --no-deps --no-index "$WHEEL"
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > "$SITE/zz-base-site-packages.pth"
# every dependency the wheel declares must import from the venv; where one is missing, a plain venv install
missing=$("$VPY" - <<'PY'
import importlib.metadata as md
import re

for req in md.requires("binexport") or []:
    if "extra ==" in req:
        continue
    name = re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0]
    try:
        md.version(name)
    except md.PackageNotFoundError:
        print(name)
PY
)
if [ -n "$missing" ]; then
    echo "check-wheel: the base interpreter lacks $(echo $missing); installing every dependency into the venv"
    rm "$SITE/zz-base-site-packages.pth"
    "$PY" -m pip --python "$VPY" install -q "$WHEEL"
fi

mkdir "$WORK/run"
cd "$WORK/run"
env -u PYTHONPATH "$VPY" - "$WORK/venv" <<'PY'
import sys
from pathlib import Path

import binexport

where = Path(binexport.__file__).resolve()
assert Path(sys.argv[1]).resolve() in where.parents, f"binexport imported from {where}, not from the venv"
print(f"binexport {binexport.__version__} from {where.parent}")
PY
version=$(env -u PYTHONPATH "$WORK/venv/bin/binexport" --version)
case "$version" in *"$expected"*) ;; *) echo "check-wheel: --version says '$version', pyproject says $expected" >&2; exit 1;; esac
echo "$version"
env -u PYTHONPATH "$WORK/venv/bin/binexport" demo --out demo --limit 40 --bench-seconds 0.5 --json > demo.json
env -u PYTHONPATH "$VPY" - <<'PY'
import json

r = json.load(open("demo.json"))
steps = r["steps"]
assert "to-onnx-int8" in steps, f"no int8 step: {r['notes']}"
assert steps["verify"]["passed"], steps["verify"]["failures"]
weights = [a["weights"] for a in steps["verify"]["artifacts"]]
assert "int8" in weights and "int8" in [row["weights"] for row in steps["bench"]["rows"]], weights
print(f"demo from the wheel: verify passed on {steps['verify']['num_images']} images, rows {weights}")
PY
echo "check-wheel: passed in $((SECONDS - start)) s"
