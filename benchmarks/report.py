"""The results table (text and Markdown) and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .harness import Comparison, RatioResult, SideResult

__all__ = ["format_comparison", "markdown", "summary", "write_json"]


def figure(value: float | None, unit: str) -> str:
    """A figure in its unit's usual precision."""
    if value is None:
        return "-"
    if unit == "µs":
        return f"{value:,.1f}"
    if unit == "MB":
        return f"{value:+.2f}"
    if unit == "round trips":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _ratio(ratio: RatioResult) -> str:
    if ratio.median is None:
        return "-"
    spread = ""
    if len(ratio.per_round) > 1:
        spread = f" [{min(ratio.per_round):.2f}-{max(ratio.per_round):.2f}]"
    return f"{ratio.median:.3f}{spread}"


def _verdict(passed: bool | None, smoke: bool) -> str:
    if smoke or passed is None:
        return ""
    return "PASS" if passed else "MISS"


Row = tuple[str, str, str, str, str, str, str, str]
HEADER = ("side", "{unit}", "CPU µs/op", "vs", "ratio [min-max]", "CPU ratio", "target", "result")


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def rows_of(results: Iterable[SideResult], smoke: bool) -> list[Row]:
    """One row per (side, reference).

    Columns: side, figure, client CPU per operation, reference, median ratio [min-max], median
    CPU ratio, target, result.
    """
    rows: list[Row] = []
    for res in results:
        if res.skipped is not None:
            rows.append((res.side, "-", "", "", f"skipped: {res.skipped}", "", "", ""))
            continue
        if res.error is not None and res.median is None:
            rows.append((res.side, "-", "", "", f"error: {res.error}", "", "", "ERROR"))
            continue
        shown, cpu = figure(res.median, res.unit), _cpu(res.cpu_us)
        if res.limit is not None:
            rows.append((res.side, shown, cpu, "", "", "", res.limit, _verdict(res.passed, smoke)))
            shown = cpu = ""
        if not res.ratios and res.limit is None:
            rows.append((res.side, shown, cpu, "", "", "", "", ""))
        for ratio in res.ratios:
            rows.append(
                (
                    res.side,
                    shown,
                    cpu,
                    ratio.ref,
                    _ratio(ratio),
                    "-" if ratio.cpu_ratio is None else f"{ratio.cpu_ratio:.2f}",
                    ratio.target or "",
                    _verdict(ratio.passed, smoke),
                )
            )
            shown = cpu = ""
        if res.error is not None:
            rows.append((res.side, "", "", "", f"error: {res.error}", "", "", "ERROR"))
    return rows


def _heading(comparison: Comparison) -> str:
    if comparison.unit in ("round trips", "instructions"):
        how = "deterministic count"
    elif comparison.rounds == 1:
        how = "one run each"
    elif comparison.unit == "rows/s":
        how = (
            f"median of {comparison.rounds} interleaved rounds of >= "
            f"{comparison.slice_seconds:g} s of inserting"
        )
    else:
        how = f"median of {comparison.rounds} interleaved rounds x {comparison.slice_seconds:g} s"
    return f"{comparison.title}  [{comparison.unit}; {how}]"


def format_comparison(comparison: Comparison, results: list[SideResult], smoke: bool) -> str:
    """A plain-text block for the terminal."""
    header = tuple(h.format(unit=comparison.unit) for h in HEADER)
    rows = rows_of(results, smoke)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 5}
    lines = [_heading(comparison)]
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown(blocks: list[tuple[Comparison, list[SideResult]]], smoke: bool) -> str:
    """The whole run as Markdown tables (for the README's performance section)."""
    out: list[str] = []
    for comparison, results in blocks:
        out.append(f"**{_heading(comparison)}**")
        out.append("")
        header = [h.format(unit=comparison.unit) for h in HEADER]
        out.append("| " + " | ".join(header) + " |")
        out.append("|---|---:|---:|---|---|---:|---|---|")
        for row in rows_of(results, smoke):
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
    return "\n".join(out)


def summary(results: list[SideResult], smoke: bool) -> list[str]:
    """Lines naming every missed target and every error."""
    lines: list[str] = []
    for res in results:
        if res.error is not None:
            lines.append(f"ERROR {res.comparison} · {res.side}: {res.error}")
        if smoke:
            continue
        if res.passed is False:
            lines.append(
                f"MISS  {res.comparison} · {res.side}: {figure(res.median, res.unit)} "
                f"{res.unit} (target {res.limit})"
            )
        for ratio in res.ratios:
            if ratio.passed is False and ratio.median is not None:
                lines.append(
                    f"MISS  {res.comparison} · {res.side} vs {ratio.ref}: "
                    f"{ratio.median:.2f} (target {ratio.target})"
                )
    return lines


def write_json(path: Path, meta: dict[str, Any], results: list[SideResult]) -> None:
    """Write the run (metadata and every per-round figure) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
