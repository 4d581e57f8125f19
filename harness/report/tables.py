"""One `make_table` for every table: Markdown and LaTeX from the same rows (tabulate)."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from harness.cache import write_atomic


def _cell(v) -> str:
    """Accuracies, shares and millions of parameters to 3 decimals; samples/s to 1; paper sizes whole."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def make_table(headers: list[str], rows: list[list], caption: str, folder: Path, stem: str = "table") -> str:
    """Write `<stem>.md` and `<stem>.tex`; returns the Markdown."""
    cells = [[_cell(v) for v in row] for row in rows]
    md = f"{caption}\n\n" + tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    tex = (
        "\\begin{table}[t]\n\\centering\n"
        + tabulate(cells, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
        + f"\n\\caption{{{caption}}}\n\\end{{table}}\n"
    )
    write_atomic(Path(folder) / f"{stem}.md", md)
    write_atomic(Path(folder) / f"{stem}.tex", tex)
    return md
