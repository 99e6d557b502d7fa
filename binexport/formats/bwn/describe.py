"""``inspect``'s view of a ``.bwn`` file: header fields, the tensor table, each checksum; nothing is decoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binexport.formats.bwn import container as box
from binexport.formats.bwn.metadata import HALF_DTYPE


def describe(
    path: str | Path, verify_checksums: bool = True, max_decoded_bytes: int | None = None
) -> dict[str, object]:
    """Header fields, the tensor table with encodings and sizes, and each checksum's status (for inspect).

    Nothing is decoded, but a file over the decoded-size limit is refused here too: describing it would
    only invite reading it.
    """
    c = box.Container.open(path, max_decoded_bytes)
    rows: list[dict[str, Any]] = []
    by_enc: dict[str, int] = {}
    for e in c.entries:
        plain = (e.count + 7) // 8 if e.dtype == "b1" else e.count * box.ITEMSIZE[e.dtype]
        status = ("ok" if c.check_crc(e) else "MISMATCH") if verify_checksums else "not checked"
        rows.append(
            {
                "name": e.name,
                "dtype": e.dtype,
                "shape": "x".join(map(str, e.shape)) or "scalar",
                "encoding": e.encoding,
                "bytes": e.length,
                "vs plain": f"{e.length / plain:.3f}" if plain else "-",
                "checksum": status,
            }
        )
        by_enc[e.encoding] = by_enc.get(e.encoding, 0) + e.length
    bad = sum(r["checksum"] == "MISMATCH" for r in rows)
    meta = c.metadata
    # ignored keys may hold any JSON value (FORMAT.md section 4): describe what it can, never fail on them
    src, norm = (v if isinstance(v := meta.get(k), dict) else {} for k in ("source", "normalization"))
    weights = meta.get("weights", "float32")
    return {
        "format": f".bwn version {box.VERSION}, alignment {c.alignment}, header {32 + c.header_length:,} B",
        "weights": f"{weights}: conv weights rounded to {weights} (lossy), BN statistics float32"
        if weights in HALF_DTYPE
        else ("1-bit" if meta.get("binarized") else "float32 (lossless)"),
        "checksums": f"header ok; {len(rows) - bad}/{len(rows)} tensors ok"
        if verify_checksums
        else "header ok; tensors not checked",
        "source": f"{src.get('format')}, {src.get('bytes'):,} B, sha256 {src.get('sha256')}"
        if isinstance(src.get("bytes"), int)
        else "unknown",
        "written by": f"binexport {meta.get('binexport_version', '?')}",
        "normalization": f"({norm.get('input')} - mean) / std, mean {_floats(norm.get('mean'))}, "
        f"std {_floats(norm.get('std'))}"
        if norm
        else "not given",
        "variant": meta.get("variant", {}).get("family", "?")
        if isinstance(meta.get("variant"), dict)
        else "pytorch (the binary-wide-resnet port)",
        "user metadata": meta.get("user") or "none",
        "bytes by encoding": by_enc,
        "tensors": rows,
    }


def _floats(v: object) -> str:
    return " ".join(f"{x:.4f}" for x in v) if isinstance(v, list) and all(type(x) is float for x in v) else str(v)
