"""Claim verdicts: the decision rule, and a report computed from result files (nothing typed by hand)."""

import json

import pytest

from harness.report.claims import NOISE_FLOOR, combine, compare, write_claims


@pytest.mark.parametrize(
    "better, worse, verdict",
    [
        ([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], "reproduced"),
        ([0.80, 0.81, 0.82], [0.90, 0.91, 0.92], "not reproduced"),
        ([0.90, 0.80, 0.85], [0.86, 0.84, 0.82], "inconclusive"),  # difference within the seeds' spread
        ([0.905], [0.900], "inconclusive"),  # one seed: the noise floor decides
        ([0.92], [0.90], "reproduced"),
    ],
)
def test_compare_needs_the_difference_to_beat_the_spread_and_the_floor(better, worse, verdict):
    delta, threshold, v = compare(better, worse)
    assert v == verdict and threshold >= NOISE_FLOOR


def test_combine():
    assert combine(["reproduced", "reproduced"]) == "reproduced"
    assert combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert combine(["reproduced", "not reproduced"]) == "not reproduced"


def _result(tmp_path, name, runs):
    folder = tmp_path / name
    folder.mkdir()
    res = {
        "experiment": {"name": name},
        "profile": {"name": "test"},
        "runs": [
            {
                "label": label,
                "spec": {"paper": None, "data_fraction": 1.0},
                "seeds": [{"accuracy": {"overall": a}, "d_d_samples": 100} for a in accs],
            }
            for label, accs in runs.items()
        ],
    }
    (folder / "result.json").write_text(json.dumps(res))


def test_report_is_computed_from_the_result_files(tmp_path):
    _result(
        tmp_path, "rq6_pairwise", {"All stages": [0.90, 0.91, 0.92], "No pairwise loss": [0.80, 0.82, 0.81]}
    )
    _result(
        tmp_path, "rq5_hard_label", {"All stages": [0.90, 0.91, 0.92], "Hard-label distillation": [0.95] * 3}
    )
    text = write_claims(tmp_path).read_text()
    rows = {line.split(" |")[0][2:]: line for line in text.splitlines() if line.startswith("| C")}
    assert "**reproduced**" in rows["C6 (RQ6): the pairwise term of Eq. 5 helps"]
    assert "0.910 ± 0.010" in rows["C6 (RQ6): the pairwise term of Eq. 5 helps"]
    assert "**not reproduced**" in next(r for k, r in rows.items() if k.startswith("C5"))
    assert "not run" in next(r for k, r in rows.items() if k.startswith("C1"))


def test_baseline_rows_say_whether_our_method_beats_each_peer(tmp_path):
    _result(
        tmp_path,
        "baselines",
        {
            "All stages": [0.90, 0.91, 0.92],
            "Random": [0.80, 0.81, 0.82],
            "L1 magnitude": [0.95, 0.96, 0.97],
            "L2 magnitude": [0.905, 0.91, 0.915],
            "First-order (joint)": [0.90, 0.91, 0.92],
        },
    )
    text = write_claims(tmp_path).read_text()
    rows = {line.split(":")[0][2:]: line for line in text.splitlines() if line.startswith("| B")}
    assert set(rows) == {"B1", "B2", "B3", "B7"}  # peers not run get no row
    # B7's claim has '|' in it (|∂L/∂θ·θ|): escaped, so the row still has exactly four cells
    assert rows["B7"].replace("\\|", "").count("|") == 5
    assert rows["B3"].endswith("**holds** |")
    assert rows["B1"].endswith("**does not hold (peer better)** |")
    assert rows["B2"].endswith("**inconclusive** |")


@pytest.mark.parametrize("second_drop, fired", [(0.05, False), (0.2, True)])
def test_alpha_note_finds_the_largest_drop_from_a_stage_start(tmp_path, second_drop, fired):
    """Drops count from each stage's start (the accuracy the previous stage ended at), once per run, and
    runs pruned to a target size (α off) or one-shot runs are left out."""
    from harness.report.claims import alpha_note

    trace = [
        {"stage": "block", "acc_distilled": 0.85},  # 0.05 below the teacher's 0.90
        {"stage": "ffn", "acc_distilled": 0.84},
        {"stage": "ffn", "acc_distilled": 0.85 - second_drop},  # from the ffn stage's start, 0.85
    ]
    seed = {"seed": 0, "run": "abc", "p_teacher_validation": {"overall": 0.90}, "trace": trace}
    wild = {
        "seed": 0,
        "run": "def",
        "p_teacher_validation": {"overall": 0.9},
        "trace": [{"stage": "ffn", "acc_distilled": 0.1}],
    }
    runs = [
        {"label": "All stages", "spec": {"mode": "iterative"}, "seeds": [seed]},
        {"label": "FFN only", "spec": {"mode": "iterative", "target_share": 0.4}, "seeds": [wild]},
        {"label": "One-shot", "spec": {"mode": "one_shot"}, "seeds": [{**wild, "run": "ghi"}]},
    ]
    for name in ("rq1", "rq3"):  # the same run in two experiments counts once
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(
            json.dumps(
                {
                    "experiment": {"name": name, "kind": "compression"},
                    "profile": {"name": "t", "compression": {"alpha": 0.15}},
                    "runs": runs,
                }
            )
        )
    note = alpha_note(tmp_path)
    assert "over the 1 iterative runs" in note
    assert f"is {max(0.05, second_drop):.3f}" in note
    assert ("α was reached at least once" in note) == fired and ("stopped no stage" in note) != fired


def test_block_influence_row_says_when_it_chose_the_paper_rules_blocks(tmp_path):
    _result(tmp_path, "baselines", {"All stages": [0.9, 0.9], "Block Influence": [0.9, 0.9]})
    res_path = tmp_path / "baselines" / "result.json"
    res = json.loads(res_path.read_text())
    for run in res["runs"]:
        for s in run["seeds"]:
            s["blocks_dropped"] = [2, 3]
    res_path.write_text(json.dumps(res))
    row = next(r for r in write_claims(tmp_path).read_text().splitlines() if r.startswith("| B4"))
    assert "dropped the same blocks as the last-blocks rule in every seed ([2, 3])" in row
