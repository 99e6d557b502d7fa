"""The bundle's model card: YAML front matter in the Hugging Face Hub's schema, then prose; every number is passed in.

The front matter carries ``license``, ``library_name``, ``tags``, ``pipeline_tag: image-classification``,
``datasets`` (CIFAR and SVHN), ``metrics`` and ``model-index`` with one accuracy per file from the ``verify`` run
(Hub keys: https://huggingface.co/docs/hub/model-cards): one result (task ``image-classification`` on the data
given) holding one ``accuracy`` metric per file, the grouping ``huggingface_hub.ModelCardData`` writes back, so
the tests' ``ModelCard.load`` round trip is exact. Values are written as JSON scalars, which YAML reads as they are.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

#: Hub dataset ids of the datasets binexport reads.
HUB_DATASETS = {"CIFAR100": "cifar100", "CIFAR10": "cifar10", "SVHN": "svhn"}
PAPER = "M. D. McDonnell, Training wide residual networks for deployment using a single bit for each weight, ICLR 2018"
PAPER_URL = "https://arxiv.org/abs/1802.08530"


def _q(v: Any) -> str:
    return json.dumps(v)


def front_matter(name: str, lic: str, binarized: bool, data: str, n_images: int, rows: list[tuple[str, float]]) -> str:
    """The YAML block: the Hub's keys, ``model-index`` with each file's measured top-1 accuracy."""
    hub = HUB_DATASETS.get(data)
    tags = ["image-classification", "wide-resnet", "onnx", "safetensors", "ort-mobile"]
    tags += ["binary-weights", "1-bit"] if binarized else ["full-precision"]
    lines = [
        "---",
        f"license: {_q(lic)}",
        "library_name: binexport",
        "pipeline_tag: image-classification",
        "tags:",
        *(f"- {_q(t)}" for t in tags),
    ]
    if hub:
        lines += ["datasets:", f"- {_q(hub)}"]
    what = f"{data} test, first {n_images} images" if hub else f"{data} ({n_images} images)"
    lines += [
        "metrics:",
        "- accuracy",
        "model-index:",
        f"- name: {_q(name)}",
        "  results:",  # one task on one dataset, one metric per file: the grouping huggingface_hub writes back
        "  - task:",
        "      type: image-classification",
        "      name: Image Classification",
        "    dataset:",
        f"      name: {_q(what)}",
        f"      type: {_q(hub or 'imagefolder')}",
        "      split: test",
        "    metrics:",
    ]
    for file, top1 in rows:
        lines += [
            "    - type: accuracy",
            f"      value: {_q(round(top1, 6))}",
            f"      name: {_q(f'top-1 accuracy ({file})')}",
            "      verified: false",
        ]
    return "\n".join(lines) + "\n---\n"


def model_card(
    m: Any,
    src: Path,
    src_sha: str,
    lic: str,
    config: dict[str, Any],
    files: list[Any],
    report: Any,
    bench: Any,
    repo_id: str,
) -> str:
    """The whole ``README.md``: front matter, what the model is, the file table, how to load each file."""
    name = f"{m.arch.name} {'1-bit' if m.binarized else 'full-precision'} ({m.arch.num_classes} classes)"
    data = report.data
    rows = [(f.path, f.top1) for f in files if f.top1 is not None]
    ref = report.reference
    out = [front_matter(name, lic, m.binarized, data, report.num_images, rows), f"# {name}\n"]
    out.append(
        f"A Wide ResNet ({m.arch.name}) {'with one bit per weight ' if m.binarized else ''}from {PAPER} "
        f"({PAPER_URL}), exported by binexport {report.version}.\n\n"
        f"- source file: `{src.name}`, sha256 `{src_sha}`\n"
        f"- classes: {m.arch.num_classes} ({config['labels_source']}); input: 32x32 RGB, "
        f"mean {config['mean']}, std {config['std']} (`config.json`)\n"
        f"- licence: {lic}" + (" (not stated: ask the model's author before publishing)" if lic == "unknown" else "")
    )
    out.append(
        f"\n## Files and what they measured\n\nOn {report.num_images} images of {data} (`verify.json`); the source "
        f"file run by binexport's PyTorch reference scored top-1 {100 * ref.top1:.2f} %. Agreement is the share "
        "of images where a file's top-1 class is the source's.\n\n"
        "| file | bytes | top-1 % | agreement % | what |\n| --- | ---: | ---: | ---: | --- |"
    )
    for f in files:
        acc = "" if f.top1 is None else f"{100 * f.top1:.2f}"
        agr = "" if f.agreement is None else f"{100 * f.agreement:.2f}"
        out.append(f"| `{f.path}` | {f.bytes:,} | {acc} | {agr} | {f.role} |")
    out.append("| `README.md`, `SHA256SUMS` | | | | this card; `sha256sum -c SHA256SUMS` |")
    if bench is not None:
        cpu = getattr(bench, "cpu", "") or platform.machine()
        out.append(f"\nBenchmarked on {cpu} (CPU; `bench.json` has every row: size, load time, latency, throughput).")
    kind = config["input_kind"]
    prep = (
        "x = img.astype('float32').transpose(2, 0, 1)[None]  # raw 0..255 pixels: the model normalises itself"
        if config["input_bn"]
        else "x = ((img / 255 - cfg['mean']) / cfg['std']).astype('float32').transpose(2, 0, 1)[None]"
    )
    out.append(
        f"\n## How to load each file\n\nEvery snippet takes `img`, a 32x32x3 uint8 RGB array (`binexport predict` "
        f"resizes any PNG), and `cfg = json.load(open('config.json'))`; the ONNX input is `{kind}`.\n\n"
        "ONNX Runtime (`onnx/model.onnx`, `onnx/model_int8.onnx`, the `.ort` files the same way):\n\n```python\n"
        "import json, numpy as np, onnxruntime as ort\ncfg = json.load(open('config.json'))\n"
        f"{prep}\ns = ort.InferenceSession('onnx/model.onnx')\n"
        "print(cfg['labels'][int(s.run(None, {s.get_inputs()[0].name: x})[0].argmax())])\n```\n\n"
        "OpenVINO:\n\n```python\nimport json, numpy as np, openvino as ov\ncfg = json.load(open('config.json'))\n"
        f"{prep}\nc = ov.Core().compile_model('onnx/model.onnx', 'CPU')\n"
        "print(cfg['labels'][int(c(x)[0].argmax())])\n```\n\n"
        "safetensors + numpy (the tensors; `docs/safetensors.md` of binexport rebuilds the network in numpy):\n\n"
        "```python\nfrom safetensors import safe_open\nwith safe_open('model.safetensors', 'np') as f:\n"
        "    meta = f.metadata()           # architecture, scale rule, bit order, packed shapes\n"
        "    tensors = {k: f.get_tensor(k) for k in f.keys()}\nprint(meta, len(tensors))\n```\n\n"
        "binexport (any file here):\n\n```python\nimport binexport\nr = binexport.predict('model.bwn', ['cat.png'])\n"
        "print(r.images[0].top[0].label)\nm = binexport.load('model.safetensors')  # the in-memory model\n"
        "print(m.arch.name)\n```\n"
    )
    out.append(
        f"\n## Publish\n\n```\nhf upload {repo_id} . .\n```\n\nPhones: the `.ort` files run on ONNX Runtime Mobile "
        "(onnxruntime-android, onnxruntime-objc / onnxruntime-c pods); the `.config` beside each lists the operators "
        "a reduced build needs (`build.sh --minimal_build --include_ops_by_config ...`).\n"
    )
    return "\n".join(out)
