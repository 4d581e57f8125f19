"""Exports a researcher takes away: the tidy frame as CSV, JSON or parquet, and claims.json with every
claim row's numbers and verdicts; each read back equals what the result files say.

Why: claims and tables used to exist only as Markdown and LaTeX; an analysis elsewhere should start from
the same numbers, not from text scraped out of a table."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from harness import cli
from harness.config.loading import load_experiment
from harness.config.paths import ROOT
from harness.report.frame import frame_of, load_results
from harness.report.vectors import compare

RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "results"
    for name in ("baselines", "rq5_hard_label"):
        shutil.copytree(RESULTS / name, root / name)
    argv = [
        "report",
        "--results-dir",
        str(root),
        "--format",
        "csv",
        "--format",
        "json",
        "--format",
        "parquet",
    ]
    assert cli.main(argv) == 0
    return root


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_the_frame_round_trips(exported, fmt):
    expected = frame_of(load_results(exported)).reset_index(drop=True)
    read = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt]
    got = read(exported / f"results.{fmt}")
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected)
    np.testing.assert_allclose(got["value"].to_numpy(float), expected["value"].to_numpy(float))
    for column in ("experiment", "role", "label", "metric"):
        assert got[column].fillna("").astype(str).tolist() == expected[column].fillna("").astype(str).tolist()


def test_claims_json_carries_the_numbers_behind_each_verdict(exported):
    """B1–B7 from claims.json: each comparison's Δ and interval equal the paired test recomputed from the
    per-sample records in result.json, and the row's verdict is the comparison's."""
    rows = {r["id"]: r for r in json.loads((exported / "claims.json").read_text())["claims"]}
    res = load_results(exported)["baselines"]
    for claim in load_experiment("baselines").claims:
        if claim.test != "pairwise":
            continue
        (test,) = rows[claim.id]["tests"]
        p = compare(res, claim.pairs[0].better, claim.pairs[0].worse)
        assert test["delta"] == pytest.approx(p.delta, abs=1e-6) and test["n_seeds"] == len(res.seeds)
        assert (test["low"], test["high"]) == pytest.approx(p.interval(), abs=1e-6)
        assert test["verdict"] == p.verdict() and 0 <= test["p"] <= test["p_holm"] <= 1
        words = {"reproduced": "holds", "not reproduced": "does not hold (peer better)"}
        assert rows[claim.id]["verdict"] == words.get(test["verdict"], test["verdict"])


def test_an_unknown_format_is_refused(capsys, exported):
    with pytest.raises(SystemExit):
        cli.main(["report", "--results-dir", str(exported), "--format", "xlsx"])
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err


def test_constraints_pin_what_the_results_record(tmp_path):
    """results/constraints.txt comes from the result files' provenance: each library at the version most of
    them used (a local build tag such as +cpu dropped, so pip accepts any build), a disagreement said."""
    import json

    from harness.report.constraints import constraints

    for name, tf in (("a", "5.24.0"), ("b", "5.24.0"), ("c", "5.25.0")):
        (tmp_path / name).mkdir()
        versions = {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": tf, "bitsandbytes": None}
        (tmp_path / name / "result.json").write_text(json.dumps({"provenance": {"versions": versions}}))
    lines = constraints(tmp_path).splitlines()
    assert "torch==2.13.0" in lines and "transformers==5.24.0" in lines
    assert "# transformers: 2 results used 5.24.0; also 5.25.0 (1)" in lines
    assert not any(line.startswith(("python", "bitsandbytes")) for line in lines)
    committed = (ROOT / "results" / "constraints.txt").read_text()
    assert committed == constraints(ROOT / "results")
