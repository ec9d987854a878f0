"""The end-of-run console summary: aligned, short, from the run manifest."""

from __future__ import annotations

from typing import Any, TextIO


def format_summary(manifest: dict[str, Any]) -> str:
    model = manifest.get("model", {})
    inp, out = manifest.get("input", {}), manifest.get("output", {})
    rate = manifest.get("throughput", {}).get("lines_per_second")
    rows = [
        ("run", manifest.get("run_id", "?")),
        ("model", f"{model.get('name', '?')} v{model.get('version', '?')}"),
        ("documents", f"{inp.get('documents', 0):,}"),
        ("lines in", f"{inp.get('lines', 0):,}"),
        ("lines written", f"{out.get('rows_written', 0):,}"),
        ("duration", f"{manifest.get('duration_seconds', 0):.1f} s"),
        ("throughput", f"{rate:,.0f} lines/s" if rate else "-"),
        ("output", out.get("path") or out.get("table") or "-"),
    ]
    if manifest.get("quarantine"):
        q = manifest["quarantine"]
        rows.append(("quarantined", f"{q['lines']:,} lines in {q['documents']:,} documents -> {q['path']}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    counts = out.get("label_counts") or {}
    if counts:
        total = sum(counts.values()) or 1
        lw = max(len(str(lab)) for lab in counts)
        lines.append("")
        lines.append(f"{'label'.ljust(lw)}  {'lines':>10}  {'share':>6}")
        for lab, n in counts.items():
            lines.append(f"{str(lab).ljust(lw)}  {n:>10,}  {n / total:>6.1%}")
    table = manifest.get("evaluation", {}).get("class_table")
    if table:
        lines += ["", table]
    if manifest.get("report", {}).get("html"):
        lines.append(f"\nreport: {manifest['report']['html']}")
    return "\n".join(lines)


def print_summary(manifest: dict[str, Any], *, stream: TextIO) -> None:
    stream.write(format_summary(manifest) + "\n")
    stream.flush()
