"""One way to print results: ``train`` and ``evaluate`` (preference and VA runs) show the same table.

Rows are plain dicts (column -> value); the table aligns them, one header line and one line per row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aligned columns (in order of first appearance); floats with 4 decimals."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(col, "")) for col in columns] for row in rows]
    widths = [max([len(col), *(len(line[i]) for line in cells)]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def echo_results(rows: Sequence[Mapping[str, Any]], run_dir: Path | str) -> None:
    """Print the results table, then the run folder."""
    typer.echo(results_table(rows))
    typer.echo(f"run: {run_dir}")


def va_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per split of a VA run's scores: CCC per label with its bootstrap interval, va_score."""
    rows = []
    for split, scores in results.items():
        row: dict[str, Any] = {"split": split}
        for key, ci in scores.items():
            if key.startswith("ccc_"):
                row[f"CCC {key[4:]}"] = f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
        row.update({"va_score": f"{scores['va_score']:.3f}", "videos": scores["n_videos"],
                    "frames": scores["n_frames"]})
        rows.append(row)
    return rows


def preference_rows(rows: Sequence[Mapping[str, Any]], *, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a preference run: training rows (mean ± std over its splits) or evaluated ones (``split``)."""
    out = []
    for r in rows:
        if split is None:
            where, accuracy = f"{r['n_splits']} splits", f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"
        else:
            where, accuracy = split, f"{r['accuracy']:.3f}"
        out.append({"label": r["label"], "threshold": f"{r['threshold']:g}", "variant": r["variant"],
                    **({"model": r["model"]} if "model" in r else {}), "split": where, "accuracy": accuracy,
                    "pairs": r["n_pairs"]})
    return out
