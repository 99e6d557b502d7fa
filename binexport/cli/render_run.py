"""Rendering of the reports of ``verify`` and ``bench``: the tables of rows, their kernel notes and notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binexport.cli.render import console, safe_line, safe_name


def _openvino_on(row: Any) -> str:
    """An OpenVINO row's label: the devices it reports (``OpenVINO:CPU``), and a lossy compute mode (``bf16``)."""
    return row.provider if row.precision == "f32" else f"{row.provider} {row.precision}"


def _kernel_notes(con: Any, rows: list[Any]) -> None:
    """One footnote per row that says which kernels ran, as its runtime names them."""
    for row in rows:
        if row.kernels:
            con.print(f"kernels: {safe_name(row.path)} on {row.runtime}: {safe_line(row.kernels)}", soft_wrap=True)


def render_verify(r: Any) -> None:
    from rich import box
    from rich.table import Table

    def diff(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1e}"

    what = Path(r.data_source).name if r.data == "images" else r.data
    t = Table(
        title=f"{what}: {r.num_images:,} images, {r.num_classes} classes, on {r.device}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    t.add_column("#", justify="right", no_wrap=True)  # names go below, whole: folding them is unreadable
    for col in ("weights\nruntime", "top-1\n%", "top-5\n%", "agree\n%", "max\n|Δ|", "mean\n|Δ|", "img/s", "result"):
        t.add_column(col, justify="left" if col[0] in "wr" else "right", no_wrap=True)
    rows = [r.reference, *r.artifacts]
    for i, row in enumerate(rows):
        result = "ref" if row.role == "reference" else ("[green]PASS[/green]" if row.passed else "[bold]FAIL[/bold]")
        on = _openvino_on(row) if row.runtime == "openvino" else row.provider.replace("ExecutionProvider", "")
        t.add_row(
            str(i),
            f"{row.weights}\n{on}",
            f"{100 * row.top1:.2f}",
            f"{100 * row.top5:.2f}",
            f"{100 * row.agreement:.2f}",
            diff(row.max_abs_logit_diff),
            diff(row.mean_abs_logit_diff),
            f"{row.images_per_s:,.0f}",
            result,
            style=None if row.passed else "red",
        )
    con = console()
    con.print(t)
    for i, row in enumerate(rows):
        con.print(f" {i}  {safe_name(row.path)}" + (" (reference)" if row.role == "reference" else ""), soft_wrap=True)
    _kernel_notes(con, rows)
    for row in r.artifacts:
        for note in row.notes:
            con.print(f"note: {safe_name(row.path)}: {safe_line(note)}", soft_wrap=True)
    for note in r.notes:
        con.print(f"note: {safe_line(note)}", soft_wrap=True)
    con.print(
        "[green]every artifact classifies like the reference[/green]"
        if r.passed
        else f"[bold red]{len(r.failures)} problem(s); rows marked FAIL[/bold red]"
    )


def _mb(n: int | None) -> str:
    """Bytes as whole MB (one decimal below 10 MB, where the int2 figures are); ``-`` where not measured."""
    return "-" if n is None else f"{n / 1e6:.1f}" if n < 10e6 else f"{n / 1e6:,.0f}"


def render_bench(r: Any) -> None:
    from rich import box
    from rich.table import Table

    flags = ", ".join(r.cpu_flags) or "none of AVX2 / AVX-512 / VNNI / AMX"
    t = Table(
        title=f"{r.cpu} ({r.cores} cores; {flags}), {r.device}, batch {r.batch_size}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    t.add_column("file", overflow="ellipsis", no_wrap=True, max_width=18)
    t.add_column("weights\non", no_wrap=True)
    for col in ("size\nMB", "load\ns", "RSS MB\npeak/wts", "b=1 ms\nmed/p90", "batch\nimg/s", "speed\nvs 1st"):
        t.add_column(col, justify="right", no_wrap=True)
    for row in r.rows:
        on = (
            "torch"
            if row.runtime == "torch"
            else _openvino_on(row).replace("OpenVINO:CPU", "OV")  # 80 columns; the title names the device
            if row.runtime == "openvino"
            else (row.provider.replace("ExecutionProvider", "").replace("CPU", "ORT"))
        )
        t.add_row(
            safe_name(row.path),
            f"{row.weights}\n{on}",
            f"{row.file_bytes / 1e6:.1f}",
            f"{row.load_s:.2f}",
            f"{row.peak_rss_bytes / 1e6:,.0f}/{_mb(row.weights_rss_bytes)}",
            f"{row.latency_ms_median:.1f}/{row.latency_ms_p90:.1f}",
            f"{row.images_per_s:,.1f}",
            f"{row.speed_ratio:.2f}x",
        )
    con = console()
    con.print(t)
    con.print(
        "RSS: the peak of the artifact's own process / what it holds resident once loaded (its weights as the "
        "runtime keeps them: RSS after loading minus after an empty session of the runtime)."
    )
    _kernel_notes(con, r.rows)
    for note in r.notes:
        con.print(f"note: {safe_line(note)}")
