"""Table cells: seeds as mean ± std, sizes without a spread that cannot exist, Markdown and LaTeX together."""

from harness.report.frame import mean_std
from harness.report.tables import make_table


def test_mean_std_shows_spread_over_seeds_and_hides_it_only_for_exact_quantities():
    assert mean_std([0.88]) == "0.880"
    assert mean_std([0.87, 0.88, 0.89]) == "0.880 ± 0.010"
    assert mean_std([0.97, 0.97, 0.97]) == "0.970 ± 0.000"  # an accuracy: the spread is a measurement
    assert mean_std([0.97, 0.97, 0.97], exact=True) == "0.970"  # a size every seed reaches
    assert mean_std([0.96, 0.98], exact=True) == "0.970 ± 0.014"
    assert mean_std([None]) is None


def test_make_table_writes_markdown_and_latex_with_readable_numbers(tmp_path):
    md = make_table(
        ["Model", "Params (M)", "Samples/s", "Accuracy"],
        [["ours", 2.8371, 81.7723, 0.8791], ["paper", 5400.0, 1.38, None]],
        "Caption.",
        tmp_path,
    )
    assert md.startswith("Caption.\n")
    assert "| ours    | 2.837        | 81.8        | 0.879      |" in md
    assert "5400" in md and "1.380" in md and "–" in md
    tex = (tmp_path / "table.tex").read_text()
    assert "\\caption{Caption.}" in tex and "81.8" in tex
