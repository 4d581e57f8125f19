"""Claim verdicts: the decision rule, and a report computed from result files and the claims the experiment
files declare (nothing typed by hand, no experiment or run named in the evaluator)."""

import copy
import json
import zlib

import numpy as np
import pytest

from harness.config.loading import experiment_files, load_experiment
from harness.config.paths import ROOT
from harness.report.claims import alpha_note, claim_rows, write_claims
from harness.report.frame import load_results
from harness.results import pack, seal_result

N = 1000  # test samples of the synthetic results
# the shape of a real result file, its runs replaced by each test's
TEMPLATE = json.loads((ROOT / "results" / "rq5_hard_label" / "result.json").read_text())
TEMPLATE["test_split"] = {"n": N, "ids_hash": "0" * 16, "tasks": "0" * N, "knowledge": "-" * N}
SEED = TEMPLATE["runs"][0]["seeds"][0]


def _correct(overall: float, key: str) -> str:
    """A per-sample record with accuracy `overall`, its errors at positions drawn from `key`."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return pack(rng.permutation(N) < round(overall * N))


def _seed(i: int, overall: float, label: str = "", **changes) -> dict:
    # per task and knowledge group: left out, since this record's samples are drawn afresh
    unknown = dict.fromkeys(k for k in SEED["accuracy"] if k not in ("overall", "n_test", "correct"))
    accuracy = {**unknown, "overall": overall, "correct": _correct(overall, f"{label}/{i}")}
    return {**copy.deepcopy(SEED), "seed": i, "accuracy": accuracy, **changes}


def _result(tmp_path, name, runs: dict[str, list[dict]], specs: dict[str, dict] | None = None) -> None:
    """results/<name>/result.json with the experiment's real record and these runs (label: seed records)."""
    res = copy.deepcopy(TEMPLATE)
    res["experiment"] = load_experiment(name).model_dump(mode="json")
    res["teacher"]["accuracy"] = _seed(0, 0.95, "teacher")["accuracy"]  # on this file's N samples
    res["runs"] = [
        {"label": label, "spec": {"label": label, **(specs or {}).get(label, {})}, "seeds": seeds}
        for label, seeds in runs.items()
    ]
    (tmp_path / name).mkdir()
    (tmp_path / name / "result.json").write_text(json.dumps(res))
    seal_result(tmp_path / name / "result.json")


def _accs(**runs: list[float]) -> dict[str, list[dict]]:
    return {
        label.replace("_", " "): [_seed(i, a, label) for i, a in enumerate(accs)]
        for label, accs in runs.items()
    }


def _rows(text: str, prefix: str) -> dict[str, str]:
    return {line.split(":")[0][2:]: line for line in text.splitlines() if line.startswith(f"| {prefix}")}


def _cells(row: str) -> list[str]:
    """A claims.md row's cells: claim, paper, ours, by knowledge, verdict, Holm-adjusted verdict, across
    teachers."""
    return [c.strip() for c in row.replace("\\|", "").strip("| ").split(" | ")]


def test_report_is_computed_from_the_result_files(tmp_path):
    _result(
        tmp_path,
        "rq6_pairwise",
        {
            "All stages": _accs(a=[0.90, 0.91, 0.92])["a"],
            "No pairwise loss": _accs(b=[0.80, 0.82, 0.81])["b"],
        },
    )
    _result(
        tmp_path,
        "rq5_hard_label",
        {"All stages": _accs(a=[0.90, 0.91, 0.92])["a"], "Hard-label distillation": _accs(b=[0.95] * 3)["b"]},
    )
    rows = _rows(write_claims(tmp_path).read_text(), "C")
    assert "**reproduced**" in rows["C6 (RQ6)"] and "0.910 ± 0.010" in rows["C6 (RQ6)"]
    assert "paper 0.923 vs 0.871" in rows["C6 (RQ6)"]  # the paper's values, from the YAML's runs
    assert "**not reproduced**" in rows["C5 (RQ5)"]
    assert "Δ -0.040, 95% CI [" in rows["C5 (RQ5)"] and "MDE 0.0" in rows["C5 (RQ5)"]
    assert "not run" in rows["C1 (RQ1)"]


def test_baseline_rows_say_whether_our_method_beats_each_peer(tmp_path):
    runs = {
        "All stages": [0.90, 0.91, 0.92],
        "Random": [0.80, 0.81, 0.82],
        "L1 magnitude": [0.95, 0.96, 0.97],
        "L2 magnitude": [0.905, 0.91, 0.915],
        "First-order (joint)": [0.90, 0.91, 0.92],
    }
    _result(tmp_path, "baselines", {k: [_seed(i, a, k) for i, a in enumerate(v)] for k, v in runs.items()})
    text = write_claims(tmp_path).read_text()
    rows = _rows(text, "B")
    assert set(rows) == {"B1", "B2", "B3", "B7"}  # peers not run get no row
    assert "Rows B1–B7 and B1c–B4c are not the paper's" in text
    # B7's claim has '|' in it (|∂L/∂θ·θ|): escaped, so the row still has exactly four cells
    assert rows["B7"].replace("\\|", "").count("|") == 8
    assert _cells(rows["B3"])[-3:] == ["**holds**", "holds", "—"]
    assert _cells(rows["B1"])[-3] == "**does not hold (peer better)**"
    assert _cells(rows["B2"])[-3:-1] == ["**inconclusive**", "inconclusive"]
    assert all("| not in the paper |" in r for r in rows.values())


def test_block_influence_row_says_when_it_chose_the_paper_rules_blocks(tmp_path):
    seeds = [_seed(i, 0.9, blocks_dropped=[2, 3]) for i in range(2)]
    _result(tmp_path, "baselines", {"All stages": seeds, "Block Influence": copy.deepcopy(seeds)})
    row = _rows(write_claims(tmp_path).read_text(), "B")["B4"]
    assert "Block Influence dropped the same blocks as the last-blocks rule in every seed ([2, 3])" in row


@pytest.mark.parametrize("second_drop, fired", [(0.05, False), (0.2, True)])
def test_alpha_note_finds_the_largest_drop_from_a_stage_start(tmp_path, second_drop, fired):
    """Drops count from each stage's start (the accuracy the previous stage ended at), once per run, and
    runs pruned to a target size (α off) or one-shot runs are left out."""
    step = SEED["trace"][0]
    trace = [
        {**step, "stage": "block", "acc_distilled": 0.85},  # 0.05 below the teacher's 0.90
        {**step, "stage": "ffn", "acc_distilled": 0.84},
        {**step, "stage": "ffn", "acc_distilled": 0.85 - second_drop},  # from the ffn stage's start, 0.85
    ]
    teacher = {**SEED["p_teacher_validation"], "overall": 0.90}
    seed = _seed(0, 0.9, run="abc", p_teacher_validation=teacher, trace=trace)
    wild = _seed(
        0,
        0.9,
        run="def",
        p_teacher_validation=teacher,
        trace=[{**step, "stage": "ffn", "acc_distilled": 0.1}],
    )
    runs = {"All stages": [seed], "FFN only": [wild], "One-shot": [{**wild, "run": "ghi"}]}
    specs = {"FFN only": {"stages": ["ffn"], "target_share": 0.4}, "One-shot": {"mode": "one_shot"}}
    for name in ("rq1_stagewise", "rq3_single_level"):  # the same run in two experiments counts once
        _result(tmp_path, name, copy.deepcopy(runs), specs)
    note = alpha_note(load_results(tmp_path))
    assert "α = 0.15" in note and "over the 1 iterative runs" in note
    assert f"is {max(0.05, second_drop):.3f}" in note
    assert ("α was reached at least once" in note) == fired and ("stopped no stage" in note) != fired


def test_no_verdict_depends_on_a_random_generator(monkeypatch):
    """Every committed claim's row, computed with numpy's generators disabled, equals the rows computed
    under 5 different global seeds: the intervals are analytic, so no verdict can turn on Monte Carlo
    noise (the bootstrap they replace flipped B1c with its generator's seed)."""
    experiments = [load_experiment(f) for f in experiment_files()]
    results = load_results(ROOT / "results")
    runs = []
    for seed in range(5):
        np.random.seed(seed)
        runs.append(claim_rows(results, experiments))
    assert all(r == runs[0] for r in runs)

    def no_draws(*args, **kwargs):
        raise AssertionError("the claims report drew random numbers")

    monkeypatch.setattr(np.random, "default_rng", no_draws)
    monkeypatch.setattr(np.random, "random", no_draws)
    assert claim_rows(results, experiments) == runs[0]
    assert {r["id"] for r in runs[0]} >= {"P1", "P2", "P3", "C1", "B1", "B1c"}


def test_every_paired_row_splits_its_delta_by_what_d_d_can_teach(tmp_path):
    """The 'By knowledge' numbers are the paired test run again on each part of the test split alone."""
    from harness.report.paired import paired_test
    from harness.results import unpack

    knowledge = "".join("su-"[i % 3] for i in range(N))  # a third knowledge questions of each group
    template = copy.deepcopy(TEMPLATE)
    template["test_split"]["knowledge"] = knowledge
    runs = _accs(All_stages=[0.90, 0.91, 0.92], Random=[0.80, 0.82, 0.81])
    res = copy.deepcopy(template)
    res["experiment"] = load_experiment("baselines").model_dump(mode="json")
    res["teacher"]["accuracy"] = _seed(0, 0.95, "teacher")["accuracy"]
    res["runs"] = [{"label": k, "spec": {"label": k}, "seeds": v} for k, v in runs.items()]
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "result.json").write_text(json.dumps(res))
    seal_result(tmp_path / "baselines" / "result.json")
    write_claims(tmp_path)
    row = next(r for r in json.loads((tmp_path / "claims.json").read_text())["claims"] if r["id"] == "B3")
    mask = np.array([c in "su" for c in knowledge])
    bits = {k: [unpack(s["accuracy"]["correct"], N) for s in v] for k, v in runs.items()}
    for part, keep in (("no_knowledge", ~mask), ("knowledge", mask)):
        p = paired_test([b[keep] for b in bits["All stages"]], [b[keep] for b in bits["Random"]])
        got = row["by_knowledge"][0][part]
        assert got["n_samples"] == keep.sum()
        assert got["delta"] == pytest.approx(p.delta, abs=1e-6)
        assert (got["low"], got["high"]) == pytest.approx(p.interval(), abs=1e-6)
    cells = _cells(_rows((tmp_path / "claims.md").read_text(), "B")["B3"])
    assert cells[3].startswith("All stages vs Random: no-knowledge ")
    assert ", knowledge " in cells[3]
