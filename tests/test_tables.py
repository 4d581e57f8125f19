"""Table cells: seeds as mean ± std, sizes without a spread that cannot exist, Markdown and LaTeX together."""

import pytest

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


def test_latency_spread_is_the_interquartile_range_over_the_median_and_flags_noisy_measurements():
    from pydantic import BaseModel

    from harness.report.render import latency_spread, spread_note
    from harness.results import Throughput

    assert latency_spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1.0)  # quartiles 1.5 and 4.5, median 3
    assert latency_spread([2.0] * 10 + [50.0]) == 0.0  # one slow call is not spread
    assert latency_spread([7.0]) == 0.0

    def measured(latencies):
        return Throughput(
            batch_size=1,
            samples_per_s=1.0,
            latency_p50_ms=1.0,
            latency_p90_ms=1.0,
            latency_stdev_pct=0.0,
            first_call_ms=1.0,
            warmup=0,
            iterations=len(latencies),
            measured_s=1.0,
            latencies_ms=latencies,
        )

    class Holder(BaseModel):
        rows: list[Throughput]
        other: Throughput | None = None

    # quartiles of the noisy one: 10 and 14 around a median of 12, a spread of 4 / 12
    steady, noisy = measured([10.0, 10.1, 10.2, 10.0]), measured([10.0, 14.0, 10.0, 14.0])
    assert spread_note(Holder(rows=[steady], other=steady)).endswith("within 10% in all 2 measurements.")
    assert "above 10% in 1 of 2 measurements (largest 33%)" in spread_note(Holder(rows=[steady], other=noisy))
    assert spread_note(Holder(rows=[])) == ""


def test_every_method_and_criterion_keeps_one_colour_in_every_figure():
    """harness/report/colors.py: the baselines' methods get distinct colours, named by what each run does,
    and a criterion's colour is the same in the pruning curves and the baselines figure."""
    from harness.config.loading import load_experiment
    from harness.report.colors import color, method

    runs = load_experiment("baselines").runs
    keys = [method(r) for r in runs]
    assert len(set(keys)) == len(keys)  # one colour per method
    assert len({color(k) for k in keys}) == len(keys)
    by_key = dict(zip(keys, runs, strict=True))
    assert by_key["first_order"].label == "All stages" and by_key["scratch"].mode == "scratch"
    assert color("random") == color(method(by_key["random"]))  # the curves' random is the baselines' Random
