"""The results table: the paper's columns (Prec., IoU, Dice) and mIoU, one row per run."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tabulate import tabulate

__all__ = ["TABLE_COLUMNS", "table_row", "format_results_table"]

#: (header, task, metric) in Detectron2 results ({task: {metric: value}}); the first task that
#: has the metric wins, so Mask R-CNN's mIoU comes from its merged masks.
TABLE_COLUMNS = (
    ("Prec.", ("chair_segments",), "Prec"),
    ("IoU", ("chair_segments",), "IoU"),
    ("Dice", ("chair_segments",), "Dice"),
    ("mIoU", ("sem_seg", "chair_segments"), "mIoU"),
    ("mask AP", ("segm",), "AP"),
)


def table_row(results: Mapping) -> dict[str, float | None]:
    """{header: value} for one run's results (``None`` where the run lacks the metric)."""
    row: dict[str, float | None] = {}
    for header, tasks, metric in TABLE_COLUMNS:
        found = [results[t][metric] for t in tasks if metric in (results.get(t) or {})]
        row[header] = found[0] if found else None
    return row


def format_results_table(rows: Mapping[str, Mapping]) -> str:
    """A plain-text table of ``{row name: results}``; columns no row has are left out."""
    table = {name: table_row(res) for name, res in rows.items()}
    headers = [h for h, _, _ in TABLE_COLUMNS if any(r[h] is not None for r in table.values())]
    if not headers:
        return ""
    body = [[name] + [_fmt(r[h]) for h in headers] for name, r in table.items()]
    return tabulate(body, headers=[""] + headers, tablefmt="pipe", stralign="right", disable_numparse=True)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if math.isnan(x) else f"{x:.2f}"
