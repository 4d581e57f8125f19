"""Known-answer tests of every claim rule of harness/report/claims.py: per-sample correctness built so that
the verdict is known by construction, written as result files and read back through `claim_rows`.

Why: the committed results show what the rules found on one run; these show that each rule decides what it
should on both sides of its threshold. Only the header of a committed result (profile, provenance, device) is
borrowed, as the shape of a file; every number a rule reads is set here.

Where a verdict turns on the width of an interval, the runs have one seed: the test is then the paired t over
samples, whose interval depends only on how many answers moved each way (harness/report/paired.py).
"""

import copy
import json
import zlib

import numpy as np
import pytest
from scipy import stats as st

from harness.config.loading import experiment_files, load_experiment
from harness.config.paths import ROOT
from harness.report.claim_tests import KEPT, Found, curve_area
from harness.report.claims import _adjust, claim_rows
from harness.report.frame import frame_of, load_results
from harness.report.paired import BORDER, Paired, holm
from harness.report.passes import sample_passes
from harness.results import pack, seal_result

N = 1000  # test samples of every synthetic result
STAGES = ("block", "ffn", "attention", "hidden")
# the header of a real result file (shape only); the validation split's size is set, since P3 counts it
HEADER = {
    k: v
    for k, v in json.loads((ROOT / "results" / "rq1_stagewise" / "result.json").read_text()).items()
    if k in ("profile", "spec_hash", "provenance", "device")
}
HEADER["profile"]["data"]["sizes"]["validation"] = 50


# ---- per-sample correctness with a known answer


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def _bits(acc: float, key: str) -> np.ndarray:
    """N answers, round(acc × N) of them right, at positions drawn from `key`."""
    return _rng(key).permutation(N) < round(acc * N)


def _moved(v: np.ndarray, key: str, up: int = 0, down: int = 0) -> np.ndarray:
    """`v` with `up` of its wrong answers made right and `down` of its right ones made wrong: Δ against `v`
    is exactly (up − down) / N, over up + down discordant samples."""
    out, rng = v.copy(), _rng(key)
    out[rng.choice(np.flatnonzero(~v), up, replace=False)] = True
    out[rng.choice(np.flatnonzero(v), down, replace=False)] = False
    return out


def _run(acc: float, key: str, seeds: int = 3) -> list[np.ndarray]:
    """A run's per-seed vectors, each seed its own draw."""
    return [_bits(acc, f"{key}/{s}") for s in range(seeds)]


def _shifted(base: list[np.ndarray], key: str, up: int = 0, down: int = 0) -> list[np.ndarray]:
    """A run that differs from `base` seed by seed by (up − down) / N, at positions drawn per seed."""
    return [_moved(v, f"{key}/{s}", up, down) for s, v in enumerate(base)]


# ---- records of a result file


def _accuracy(v: np.ndarray, **extra) -> dict:
    return {"overall": float(np.mean(v)), "n_test": N, "correct": pack(v), **extra}


def _params(total: int) -> dict:
    parts = ("vision_model", "qformer", "language_projection", "query_tokens")
    return {**dict.fromkeys(parts, 0), "language_model": total, "total": total, "lm_blocks": total}


def _speed(batch: int, per_s: float) -> dict:
    ms = 1000 / per_s
    return {
        "batch_size": batch,
        "samples_per_s": per_s,
        "latency_p50_ms": ms,
        "latency_p90_ms": ms,
        "latency_stdev_pct": 0.0,
        "first_call_ms": ms,
        "warmup": 1,
        "iterations": 10,
        "measured_s": 1.0,
        "latencies_ms": [ms],
    }


def _step(i: int, stage: str) -> dict:
    """One trace row (pipeline step `i`)."""
    return {
        "step": i,
        "stage": stage,
        "amount": 1,
        "removed_total": i,
        "params_total": 1000,
        "params_lm": 1000,
        "acc_pruned": 0.5,
        "acc_distilled": 0.5,
        "loss_last_epoch": 0.1,
        "seconds": 1.0,
    }


def _seed(i: int, v: np.ndarray, **changes) -> dict:
    """Seed `i` of a run whose final model answers `v`."""
    return {
        "seed": i,
        "run": f"run{i}",
        "run_dir": "/nowhere",
        "seconds_this_call": 0.0,
        "compression_seconds": 0.0,
        "d_d_samples": 200,
        "d_p_samples": 100,
        "structure": {},
        "parameters": _params(200_000),
        "accuracy": _accuracy(v),
        "trace": [],
        "epochs_used": 1.0,
        "blocks_dropped": None,
        "p_teacher_validation": {"overall": 0.9},
        "distillation_sample_passes": 200.0,
        **changes,
    }


def _seeds(vectors: list[np.ndarray], **changes) -> list[dict]:
    return [_seed(i, v, **changes) for i, v in enumerate(vectors)]


def _teacher(v: np.ndarray, unseen: float | None = 0.95, **changes) -> dict:
    return {
        "structure": {},
        "training_sample_passes": 10_000_000,
        "parameters": _params(1_000_000),
        "accuracy": _accuracy(v, knowledge_unseen=unseen),
        "throughput": [_speed(1, 10.0)],
        **changes,
    }


TEACHER = _bits(0.9, "teacher")


def _header(tmp_path, name: str, test_split: dict | None = None) -> tuple[dict, object]:
    exp = load_experiment(name)
    res = copy.deepcopy(HEADER)
    res |= {
        "experiment": exp.model_dump(mode="json"),
        "seeds": [0],
        "test_split": test_split or {"n": N, "ids_hash": "0" * 16, "tasks": "0" * N, "knowledge": "-" * N},
    }
    (tmp_path / name).mkdir()
    return res, exp


def _compression(
    tmp_path,
    name: str,
    runs: dict[str, list[dict]],
    teacher: dict | None = None,
    specs: dict[str, dict] | None = None,
    knowledge: str = "-" * N,
    **split_fields,
) -> None:
    """results/<name>/result.json: the experiment's own record and run specs (less `specs`' changes), and
    these seeds (label: seed records); `split_fields` change the test split's record (tasks, ceiling)."""
    split = {"n": N, "ids_hash": "0" * 16, "tasks": "0" * N, "knowledge": knowledge, **split_fields}
    res, exp = _header(tmp_path, name, split)
    declared = {r.label: r.model_dump(mode="json") for r in exp.runs}
    res["runs"] = [
        {"label": label, "spec": {**declared[label], **(specs or {}).get(label, {})}, "seeds": seeds}
        for label, seeds in runs.items()
    ]
    res["teacher"] = teacher or _teacher(TEACHER)
    res["paper"] = [r.model_dump(mode="json") for r in exp.paper]
    (tmp_path / name / "result.json").write_text(json.dumps(res))
    seal_result(tmp_path / name / "result.json")


def _rows(tmp_path, *names: str) -> dict[str, dict]:
    """claim_rows over the results written, for the claims of experiments `names`, by id."""
    rows = claim_rows(load_results(tmp_path), [load_experiment(n) for n in names])
    return {r["id"]: r for r in rows}


# ---- pairwise


@pytest.mark.parametrize(
    "up, down, verdict",
    [(100, 0, "reproduced"), (0, 100, "not reproduced"), (0, 0, "inconclusive")],
)
def test_pairwise_one_pair(tmp_path, up, down, verdict):
    """C5: ours 0.10 above the peer in every seed reproduces, 0.10 below refutes, the same answers decide
    nothing (Δ 0 with no spread is not a gain)."""
    hard = _run(0.8, "hard")
    ours = _shifted(hard, "ours", up, down) if up or down else copy.deepcopy(hard)
    runs = {"All stages": _seeds(ours), "Hard-label distillation": _seeds(hard)}
    _compression(tmp_path, "rq5_hard_label", runs)
    row = _rows(tmp_path, "rq5_hard_label")["C5"]
    assert row["verdict"] == verdict
    assert row["adjusted"] == verdict  # alone in its family: Holm changes nothing
    assert f"Δ {(up - down) / N:+.3f}" in row["ours"]
    assert "paper 0.923 vs 0.897" in row["ours"]  # the YAML's paper values, cited beside ours
    assert row["comparisons"] == 1 and row["untestable"] == ""


def test_hypothesis_rows_are_worded_holds_or_not(tmp_path):
    """B-rows are not the paper's: a gain 'holds', a loss is 'peer better', no difference 'inconclusive';
    decisive ones (p at the floor) stay so after Holm's adjustment over the family."""
    ours = _run(0.8, "ours")
    runs = {
        "All stages": _seeds(ours),
        "L1 magnitude": _seeds(_shifted(ours, "l1", down=100)),  # ours better
        "L2 magnitude": _seeds(_shifted(ours, "l2", up=100)),  # the peer better
        "Random": _seeds(copy.deepcopy(ours)),  # the same answers
    }
    _compression(tmp_path, "baselines", runs)
    rows = _rows(tmp_path, "baselines")
    assert set(rows) == {"P1", "B1", "B2", "B3"}  # P1 (a premise of the paper's) says 'not run'
    expected = {"B1": "holds", "B2": "does not hold (peer better)", "B3": "inconclusive"}
    assert {i: rows[i]["verdict"] for i in expected} == expected
    assert {i: rows[i]["adjusted"] for i in expected} == expected
    assert rows["P1"]["verdict"] == "not run" and rows["B1"]["paper"] == "not in the paper"


C3_PEERS = ("Block only", "FFN only", "Attention only", "Input/output only")


@pytest.mark.parametrize(
    "moves, verdict",
    [
        ({}, "reproduced"),  # every pair a clear gain
        ({"Attention only": (100, 0)}, "not reproduced"),  # one peer significantly better
        ({"FFN only": (0, 0)}, "inconclusive"),  # one pair undecided, none reversed
        ({"FFN only": (0, 0), "Block only": (100, 0)}, "not reproduced"),  # a reversal outweighs
    ],
)
def test_pairwise_claims_of_several_pairs(tmp_path, moves, verdict):
    """C3 holds only if all four pairs do; one pair going significantly the other way refutes it."""
    ours = _run(0.8, "ours")
    runs = {"All stages": _seeds(ours)}
    for peer in C3_PEERS:
        up, down = moves.get(peer, (0, 100))  # default: the peer 0.10 below ours
        runs[peer] = _seeds(_shifted(ours, peer, up, down) if up or down else copy.deepcopy(ours))
    _compression(tmp_path, "rq3_single_level", runs)
    row = _rows(tmp_path, "rq3_single_level")["C3"]
    assert row["comparisons"] == 4 and row["verdict"] == verdict and row["adjusted"] == verdict


@pytest.mark.parametrize("reversed_pair, verdict", [(None, "reproduced"), ("FFN only", "not reproduced")])
def test_one_shot_claim_pairs_each_level_with_its_iterative_run(tmp_path, reversed_pair, verdict):
    """C4: five pairs, iterative vs one-shot at each level; each one-shot run is paired with its own
    iterative run, not with 'All stages'."""
    runs = {}
    for level in (*C3_PEERS, "All stages"):
        iterative = _run(0.8, level)
        up, down = (100, 0) if level == reversed_pair else (0, 100)  # one-shot 0.10 below, or above
        runs[level] = _seeds(iterative)
        runs[f"{level} (one-shot)"] = _seeds(_shifted(iterative, f"{level}/1s", up, down))
    _compression(tmp_path, "rq4_one_shot", runs)
    row = _rows(tmp_path, "rq4_one_shot")["C4"]
    assert row["comparisons"] == 5 and row["verdict"] == verdict
    assert row["ours"].count("[one-shot given the iterative run's total epochs]") == 5
    assert row["ours"].count("Δ +0.100") == 5 - (reversed_pair is not None)


# ---- kept_quality (C1)


def _stage_ends(v: np.ndarray, sizes=(600_000, 400_000, 300_000, 200_000), speeds=(15.0, 20.0, 25.0, 30.0)):
    """The first seed's stage ends: size at each, throughput at batch 1 (the teacher's: 1M, 10/s)."""
    return [
        {
            "stage": stage,
            "step": i + 1,
            "parameters": _params(size),
            "accuracy": _accuracy(v),
            "throughput": [_speed(1, per_s)],
        }
        for i, (stage, size, per_s) in enumerate(zip(STAGES, sizes, speeds, strict=True))
    ]


def _stagewise(tmp_path, final: np.ndarray, **ends) -> dict:
    """rq1_stagewise with one seed whose final model answers `final`; its stage ends as `ends` change them."""
    seed = _seed(0, final, stage_ends=_stage_ends(final, **ends))
    _compression(tmp_path, "rq1_stagewise", {"All stages": [seed]})
    return _rows(tmp_path, "rq1_stagewise")


@pytest.mark.parametrize(
    "up, down, verdict",
    [
        (10, 15, "reproduced"),  # Δ −0.005 ± 0.010: the whole interval above −0.02
        (0, 100, "not reproduced"),  # Δ −0.10 ± 0.019: the whole interval below −0.02
        (100, 120, "inconclusive"),  # Δ −0.02 ± 0.029: across −0.02
    ],
)
def test_kept_quality_is_non_inferiority_against_the_teacher(tmp_path, up, down, verdict):
    """C1: Δ = final − teacher read against −KEPT, not 0: a final model slightly below the teacher keeps its
    quality, one 0.10 below does not, one 0.02 below with a wide interval is undecided."""
    assert KEPT == 0.02
    row = _stagewise(tmp_path, _moved(TEACHER, "final", up, down))["C1"]
    assert row["verdict"] == verdict and row["adjusted"] == verdict
    assert "1.00M → 0.20M parameters (5.0×)" in row["ours"] and "speed-up 3.00× at batch 1" in row["ours"]
    assert f"Δ {(up - down) / N:+.3f}" in row["ours"]


@pytest.mark.parametrize(
    "ends",
    [
        {"sizes": (600_000, 400_000, 400_000, 200_000)},  # one stage removed nothing
        {"speeds": (15.0, 20.0, 25.0, 10.0)},  # the final model no faster than the teacher
    ],
)
def test_kept_quality_needs_the_model_to_shrink_and_speed_up(tmp_path, ends):
    """C1 with the teacher's very answers (kept by any margin) still fails when a stage did not shrink the
    model or the final model is not faster: the claim is all three together."""
    row = _stagewise(tmp_path, TEACHER.copy(), **ends)["C1"]
    assert row["verdict"] == "not reproduced" and row["adjusted"] == "not reproduced"


def test_kept_quality_same_model_as_teacher_is_kept(tmp_path):
    """The teacher's own answers: Δ 0 exactly, no spread, above −0.02 (p 0, so Holm keeps it)."""
    row = _stagewise(tmp_path, TEACHER.copy())["C1"]
    assert row["verdict"] == "reproduced" and row["adjusted"] == "reproduced"


# ---- trend (C2)

SIZES = ("1/4 of train", "1/2 of train", "3/4 of train", "all of train")


@pytest.mark.parametrize("up, down, verdict", [(100, 0, "reproduced"), (0, 100, "not reproduced")])
def test_trend_compares_the_most_samples_with_the_fewest(tmp_path, up, down, verdict):
    """C2: the run on all of train against the run on a quarter of it; the runs between only show."""
    fewest = _run(0.8, "quarter")
    runs = {
        SIZES[0]: _seeds(fewest, d_d_samples=50),
        SIZES[1]: _seeds(_run(0.5, "half"), d_d_samples=100),  # far below both: the trend reads past it
        SIZES[2]: _seeds(_run(0.95, "three"), d_d_samples=150),
        SIZES[3]: _seeds(_shifted(fewest, "all", up, down), d_d_samples=200),
    }
    _compression(tmp_path, "rq2_sample_size", runs)
    row = _rows(tmp_path, "rq2_sample_size")["C2"]
    assert row["verdict"] == verdict and row["comparisons"] == 1
    assert row["ours"].startswith("50: 0.800 ± 0.000, 100: 0.500 ± 0.000, 150: 0.950 ± 0.000, 200: ")
    assert f"(largest vs smallest: Δ {(up - down) / N:+.3f}" in row["ours"]


# ---- premises


KNOWLEDGE_QS = 300  # knowledge questions of the P1 results: the first 300 samples, seen and unseen in turn


def _scratch_gap(tmp_path, gap: int, seeds: int) -> dict:
    """baselines with 'Trained from scratch' wrong on `gap` knowledge questions the teacher answers, and
    answering every other sample as the teacher does; P1's row."""
    teacher = np.zeros(N, bool)
    teacher[:270] = True  # 0.90 of the knowledge questions
    teacher[KNOWLEDGE_QS:] = _bits(0.8, "rest")[KNOWLEDGE_QS:]
    knowledge = ("su" * (KNOWLEDGE_QS // 2)) + "-" * (N - KNOWLEDGE_QS)
    scratch = teacher.copy()
    scratch[:gap] = False
    runs = {"Trained from scratch": _seeds([scratch] * seeds)}
    _compression(tmp_path, "baselines", runs, teacher=_teacher(teacher, unseen=0.9), knowledge=knowledge)
    return _rows(tmp_path, "baselines")["P1"]


def test_scratch_gap_holds_when_the_whole_interval_clears_the_bound(tmp_path):
    """P1: a gap of 0.50 on knowledge questions holds; it is measured on them alone (over all samples the
    same answers differ by only 0.15)."""
    row = _scratch_gap(tmp_path, gap=150, seeds=3)
    assert row["verdict"] == "holds" and row["premise"] and row["comparisons"] == 0
    assert (
        "knowledge questions: teacher 0.900, Trained from scratch 0.400 ± 0.000 (gap Δ +0.500" in row["ours"]
    )


def test_scratch_gap_fails_when_its_interval_reaches_below_the_bound(tmp_path):
    """P1: a gap of 0.12 over 300 questions (95% interval about ±0.04) is above 0.10 but not wholly: fails."""
    row = _scratch_gap(tmp_path, gap=36, seeds=1)
    assert "gap Δ +0.120, 95% CI [+0.08" in row["ours"]
    assert row["verdict"] == "fails"


# P4 and P5: a test split of 300 knowledge questions, then 700 others of five tasks in turn
TASK_CODES = "0" * KNOWLEDGE_QS + "01234" * ((N - KNOWLEDGE_QS) // 5)
SPLIT_KNOWLEDGE = ("su" * (KNOWLEDGE_QS // 2)) + "-" * (N - KNOWLEDGE_QS)
P4_RUN, P5_RUNS = (
    "Final structure with the teacher's recipe",
    ("Trained from scratch", "Teacher's structure on D_d alone"),
)


@pytest.mark.parametrize(
    "lost, verdict",
    [(0, "holds"), (1, "holds"), (60, "fails")],
)
def test_redundancy_needs_the_final_structure_within_the_margin_on_knowledge_too(tmp_path, lost, verdict):
    """P4: the final structure with the teacher's recipe answers as the teacher does, but for `lost` of the
    knowledge questions the teacher gets right: 60 of 300 (0.2 there, 0.06 overall) fails on knowledge."""
    teacher = _bits(0.9, "p4-teacher")
    mine = teacher.copy()
    mine[np.flatnonzero(teacher[:KNOWLEDGE_QS])[:lost]] = False
    _compression(
        tmp_path,
        "premises",
        {P4_RUN: _seeds([mine])},
        teacher=_teacher(teacher, unseen=None),
        knowledge=SPLIT_KNOWLEDGE,
        tasks=TASK_CODES,
        ceiling=0.93,
    )
    row = _rows(tmp_path, "premises")["P4"]
    assert row["verdict"] == verdict and row["premise"]
    assert "needs both intervals above −0.02" in row["ours"]


@pytest.mark.parametrize(
    "gain, ceiling, verdict",
    [(0, 0.86, "holds"), (0, 0.95, "fails"), (40, 0.86, "fails"), (1, 0.86, "holds")],
)
def test_teacher_best_fails_when_a_d_d_model_beats_it_on_one_task(tmp_path, gain, ceiling, verdict):
    """P5: the models trained on D_d alone answer as the teacher does, but the second gets `gain` more
    no-knowledge 'logo' samples right (40 of 140: beats it; 1: within noise); a teacher far under the
    ceiling fails the 0.05 bound on its own."""
    teacher = _bits(0.9, "p5-teacher")
    teacher[KNOWLEDGE_QS + 3 :: 10] = False  # half the no-knowledge logo samples wrong
    logo = np.flatnonzero(~teacher & (np.array(list(TASK_CODES)) == "3") & (np.arange(N) >= KNOWLEDGE_QS))
    better = teacher.copy()
    better[logo[:gain]] = True
    assert len(logo) >= gain
    _compression(
        tmp_path,
        "premises",
        {P5_RUNS[0]: _seeds([teacher]), P5_RUNS[1]: _seeds([better])},
        teacher=_teacher(teacher, unseen=None),
        knowledge=SPLIT_KNOWLEDGE,
        tasks=TASK_CODES,
        ceiling=ceiling,
    )
    row = _rows(tmp_path, "premises")["P5"]
    assert row["verdict"] == verdict
    beaten = f"beats the teacher: {P5_RUNS[1]} on logo" if gain == 40 else "beats the teacher: none"
    assert beaten in row["ours"]
    assert f"vs oracle ceiling {ceiling:.3f}" in row["ours"]


@pytest.mark.parametrize(
    "unseen, verdict", [(0.95, "holds"), (0.85, "holds"), (0.80, "fails"), (None, "not run")]
)
def test_unseen_knowledge_reads_the_teachers_recorded_accuracy(tmp_path, unseen, verdict):
    """P2: the teacher's accuracy on unseen-advertiser questions against 0.85 (reached exactly: holds)."""
    _compression(tmp_path, "rq1_stagewise", {"All stages": _seeds([TEACHER])}, _teacher(TEACHER, unseen))
    assert _rows(tmp_path, "rq1_stagewise")["P2"]["verdict"] == verdict


def _budget(tmp_path, criterion: str, total: int = 12_000) -> dict[str, dict]:
    """rq1_stagewise whose 'All stages' made 2 block steps and 3 FFN steps over D_p of 100 samples; seed 1
    distilled more (1,000 sample passes) than seed 0 (500)."""
    trace = [_step(i + 1, stage) for i, stage in enumerate(["block"] * 2 + ["ffn"] * 3)]
    seeds = [
        _seed(s, TEACHER, trace=trace, distillation_sample_passes=float(d)) for s, d in enumerate((500, 1000))
    ]
    teacher = _teacher(TEACHER, training_sample_passes=total)
    _compression(
        tmp_path, "rq1_stagewise", {"All stages": seeds}, teacher, {"All stages": {"criterion": criterion}}
    )
    return _rows(tmp_path, "rq1_stagewise")


@pytest.mark.parametrize(
    "criterion, importance, ratio, verdict",
    [("first_order", 300, 1300 / 12_000, "fails"), ("l2", 0, 1000 / 12_000, "holds")],
)
def test_budget_ratio_counts_every_gradient_pass(tmp_path, criterion, importance, ratio, verdict):
    """P3: gradient passes = distillation + Eq. 1 over D_p at every step scored by a gradient (FFN steps of a
    first-order run: 3 × 100; block steps never; a weight-magnitude criterion never), of the seed that
    made the most, over the teacher's 12,000 training passes, against 0.10."""
    row = _budget(tmp_path, criterion)["P3"]
    ours = row["ours"]
    assert (
        f"{1000 + importance:,} gradient sample passes (distillation 1,000 + Eq. 1 importance {importance})"
        in ours
    )
    assert f"(ratio {ratio:.3f}, needs ≤ 0.1)" in ours
    # forward-only: validation 50 × (1 + 2 × 5 steps) + the teacher's outputs over D_d (200)
    assert "forward-only passes, not in the ratio: 750" in ours
    assert row["verdict"] == verdict


@pytest.mark.parametrize(
    "spec, stages, importance, forward",
    [
        ({}, ["block", "block", "ffn", "attention", "hidden"], 300, 750),
        ({"pruner": "torch_pruning"}, ["block", "ffn", "attention", "hidden", "hidden"], 100, 750),
        ({"block_criterion": "block_influence"}, ["block", "block", "ffn", "ffn", "ffn"], 300, 950),
        ({"criterion": "first_order_joint"}, ["block", "ffn", "ffn", "ffn", "hidden"], 400, 750),
        ({"mode": "one_shot"}, ["block+ffn+attention+hidden"], 300, 350),
    ],
)
def test_sample_passes_of_a_hand_made_trace(tmp_path, spec, stages, importance, forward):
    """passes.py: Eq. 1 costs D_p at each gradient-scored level of each step (one-shot steps prune several
    levels at once; Torch-Pruning's FFN and hidden steps read weights); Block Influence is forward-only."""
    trace = [_step(i + 1, stage) for i, stage in enumerate(stages)]
    seed = _seed(0, TEACHER, trace=trace, distillation_sample_passes=1000.0)
    _compression(tmp_path, "rq1_stagewise", {"All stages": [seed]}, specs={"All stages": spec})
    res = load_results(tmp_path)["rq1_stagewise"]
    counted = sample_passes(res, res.runs[0], res.runs[0].seeds[0])
    assert (counted.distillation, counted.importance, counted.forward_only) == (1000, importance, forward)
    assert counted.gradient == 1000 + importance


def test_a_failing_premise_makes_every_other_row_untestable(tmp_path):
    """P2 and P3 fail: every claim row (of any experiment) says so, premises themselves do not; the
    verdicts of the runs alone are still given."""
    trace = [_step(i + 1, stage) for i, stage in enumerate(["block"] * 2 + ["ffn"] * 3)]
    seed = _seed(0, TEACHER, trace=trace, distillation_sample_passes=1000.0, stage_ends=_stage_ends(TEACHER))
    teacher = _teacher(TEACHER, unseen=0.5, training_sample_passes=12_000)
    _compression(tmp_path, "rq1_stagewise", {"All stages": [seed]}, teacher)
    hard = _run(0.8, "hard", seeds=1)
    _compression(
        tmp_path,
        "rq5_hard_label",
        {"All stages": _seeds(_shifted(hard, "ours", up=100)), "Hard-label distillation": _seeds(hard)},
    )
    rows = _rows(tmp_path, "rq1_stagewise", "rq5_hard_label")
    assert [i for i in rows] == ["P2", "P3", "C1", "C5"]  # premises first
    assert rows["P2"]["verdict"] == rows["P3"]["verdict"] == "fails"
    assert rows["P2"]["untestable"] == rows["P3"]["untestable"] == ""
    assert rows["C1"]["untestable"] == rows["C5"]["untestable"] == "P2, P3 fail"
    assert rows["C1"]["verdict"] == rows["C5"]["verdict"] == "reproduced"


def test_one_failing_premise_is_named_alone(tmp_path):
    """Only P3 fails: the rows below say 'P3 fails'; once it holds, nothing is untestable."""
    (tmp_path / "a").mkdir()
    rows = _budget(tmp_path / "a", "first_order")
    assert rows["P2"]["verdict"] == "holds" and rows["P3"]["verdict"] == "fails"
    assert rows["C1"]["untestable"] == "P3 fails"
    (tmp_path / "b").mkdir()
    rows = _budget(tmp_path / "b", "first_order", total=100_000)
    assert rows["P3"]["verdict"] == "holds" and rows["C1"]["untestable"] == ""


# ---- curve_area (B1c–B4c)


def _curves(tmp_path, curves: dict[tuple[str, str], list[list[np.ndarray]]]) -> None:
    """results/pruning_curves/result.json: for (level, criterion), per seed, the vectors of steps 1, 2, …
    (step 0, the teacher, is left out of the area)."""
    res, _ = _header(tmp_path, "pruning_curves")
    res["runs"] = {"dataset": "0" * 12, "teacher": "0" * 12}
    res["teacher"] = _teacher(TEACHER)
    res["curves"] = [
        {
            "level": level,
            "criterion": criterion,
            "seed": s,
            "seconds": 1.0,
            "points": [
                {
                    "step": k,
                    "removed": k,
                    "share": k / 10,
                    "params_lm": 1000 - k,
                    "validation": 0.5,
                    "accuracy": _accuracy(v),
                }
                for k, v in enumerate([TEACHER, *steps])
            ],
        }
        for (level, criterion), per_seed in curves.items()
        for s, steps in enumerate(per_seed)
    ]
    (tmp_path / "pruning_curves" / "result.json").write_text(json.dumps(res))
    seal_result(tmp_path / "pruning_curves" / "result.json")


def _same_every_seed(steps: list[np.ndarray], seeds: int = 3) -> list[list[np.ndarray]]:
    """A criterion that draws no random numbers: one curve for every seed."""
    return [copy.deepcopy(steps) for _ in range(seeds)]


def test_curve_area_reads_the_better_criterion_per_sample(tmp_path):
    """B1c: first-order 0.10 above L1 at every step holds; B2c: L2 the very same curve, inconclusive; B3c:
    random (its own curve per seed) 0.15 above first-order, the peer better; B4c: block level only, the
    last blocks 0.10 above Block Influence holds."""
    l1 = [_bits(a, f"l1/{k}") for k, a in enumerate((0.7, 0.5, 0.3))]
    first = [_moved(v, f"fo/{k}", up=100) for k, v in enumerate(l1)]
    influence = [_bits(a, f"bi/{k}") for k, a in enumerate((0.7, 0.5))]
    _curves(
        tmp_path,
        {
            ("ffn", "first_order"): _same_every_seed(first),
            ("ffn", "l1"): _same_every_seed(l1),
            ("ffn", "l2"): _same_every_seed(first),
            ("ffn", "random"): [
                [_moved(v, f"r{s}/{k}", up=150) for k, v in enumerate(first)] for s in range(3)
            ],
            ("block", "last"): _same_every_seed(
                [_moved(v, f"la/{k}", up=100) for k, v in enumerate(influence)]
            ),
            ("block", "block_influence"): _same_every_seed(influence),
        },
    )
    rows = _rows(tmp_path, "pruning_curves")
    expected = {"B1c": "holds", "B2c": "inconclusive", "B3c": "does not hold (peer better)", "B4c": "holds"}
    assert {i: r["verdict"] for i, r in rows.items()} == expected
    assert {i: r["adjusted"] for i, r in rows.items()} == expected
    assert (
        rows["B1c"]["ours"].startswith("ffn: first_order area 0.600") and "vs l1 0.500" in rows["B1c"]["ours"]
    )
    assert "Δ +0.100" in rows["B1c"]["ours"] and "Δ +0.100" in rows["B4c"]["ours"]
    assert rows["B4c"]["ours"].startswith("block: last area 0.700") and "Δ +0.100" in rows["B4c"]["ours"]
    # against a criterion that varies with the seed, the seed-independent one is shown as one curve
    b3c = rows["B3c"]["ours"]
    assert b3c.startswith("ffn: first_order area 0.600 (one curve for every seed) vs random 0.750 ± 0.000")
    assert "Δ -0.150" in b3c
    assert all(r["comparisons"] == 1 for r in rows.values())  # B1c–B3c: the one level with both criteria


def test_seed_independent_curves_count_as_one_seed(tmp_path):
    """Two criteria whose curves are the same in every seed compare as one seed (copies would claim seeds
    that vary nothing); against a seeded criterion, every seed counts."""
    base = [_bits(0.6, f"base/{k}") for k in range(2)]
    _curves(
        tmp_path,
        {
            ("ffn", "first_order"): _same_every_seed(
                [_moved(v, f"fo/{k}", up=100) for k, v in enumerate(base)]
            ),
            ("ffn", "l1"): _same_every_seed(base),
            ("ffn", "random"): [
                [_moved(v, f"r{s}/{k}", down=50) for k, v in enumerate(base)] for s in range(3)
            ],
        },
    )
    res = load_results(tmp_path)["pruning_curves"]
    exp, frame = load_experiment("pruning_curves"), frame_of({"pruning_curves": res})
    claims = {c.id: c for c in exp.claims}
    seeds = {
        i: [p.n_seeds for p, _ in curve_area(claims[i], exp, res, frame).comparisons] for i in ("B1c", "B3c")
    }
    assert seeds == {"B1c": [1], "B3c": [3]}
    assert curve_area(claims["B4c"], exp, res, frame) is None  # no block curves: no row


# ---- Holm within a family


def test_holm_hand_computed():
    """Sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, each at least the one before, in the given order."""
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_holm_turns_a_marginal_gain_inconclusive_within_its_family(tmp_path):
    """B1: Δ +0.02 over 100 discordant samples, raw p ≈ 0.045, holds on its own; beside B2 (no difference,
    p 1) and B3 (p at the floor) its Holm p is 2 × 0.045 ≈ 0.09: inconclusive. B3 stays decided."""
    ours = _bits(0.8, "ours")
    l1 = _moved(ours, "l1", up=40, down=60)  # ours 60 right where L1 is wrong, 40 the other way
    runs = {
        "All stages": _seeds([ours]),
        "L1 magnitude": _seeds([l1]),
        "L2 magnitude": _seeds([ours.copy()]),
        "Random": _seeds([_moved(ours, "random", down=100)]),
    }
    _compression(tmp_path, "baselines", runs)
    rows = _rows(tmp_path, "baselines")
    assert "Δ +0.020, 95% CI [+0.000, +0.040]" in rows["B1"]["ours"]
    assert (rows["B1"]["verdict"], rows["B1"]["adjusted"]) == ("holds", "inconclusive")
    assert (rows["B2"]["verdict"], rows["B2"]["adjusted"]) == ("inconclusive", "inconclusive")
    assert (rows["B3"]["verdict"], rows["B3"]["adjusted"]) == ("holds", "holds")


def _with_p(p: float, delta: float = 0.02, n: int = 1000) -> Paired:
    """A one-seed Paired whose two-sided p against 0 is `p`."""
    se = delta / float(st.t.isf(p / 2, n - 1))
    return Paired(delta, 0.0, se**2, n, 1)


def test_holm_adjusts_within_each_family_only():
    """Two comparisons at p 0.03 and 0.04 in one family are both inconclusive after Holm (0.06, 0.06); the
    same p 0.03 alone in another family stays decided; a row decided without comparisons is left out."""
    found = {
        "C1": Found("", [(_with_p(0.03), 0.0)]),
        "C2": Found("", [(_with_p(0.04), 0.0)]),
        "B1": Found("", [(_with_p(0.03), 0.0)]),
        "P1": Found("", verdict="holds"),
    }
    assert found["C1"].raw() == found["C2"].raw() == found["B1"].raw() == "reproduced"
    assert found["C1"].comparisons[0][0].p_value() == pytest.approx(0.03, rel=1e-6)
    adjusted, _ = _adjust(found, {"C1": "paper", "C2": "paper", "B1": "baselines", "P1": "premises"})
    assert adjusted == {"C1": "inconclusive", "C2": "inconclusive", "B1": "reproduced"}


def test_holm_reads_each_comparison_against_its_own_threshold():
    """A non-inferiority comparison (C1's −0.02) enters Holm with its p against −0.02, not against 0."""
    kept = Paired(-0.005, 0.0, 0.006**2, 1000, 1)  # Δ −0.005 ± 0.012: above −0.02, not above 0
    assert kept.verdict(-KEPT) == "reproduced" and kept.verdict(0.0) == "inconclusive"
    found = {
        "C1": Found("", [(kept, -KEPT)], decide=lambda vs: vs[0]),
        "C5": Found("", [(_with_p(1e-6), 0.0)]),
    }
    assert _adjust(found, {"C1": "paper", "C5": "paper"})[0] == {"C1": "reproduced", "C5": "reproduced"}


# ---- borderline


def _with_bound(low: float, half: float = 0.01, n: int = 1000) -> Paired:
    """A one-seed Paired whose 95% interval is [low, low + 2 × half]."""
    q = float(st.t.isf(0.025, n - 1))
    return Paired(low + half, 0.0, (half / q) ** 2, n, 1)


@pytest.mark.parametrize(
    "low, threshold, borderline, verdict",
    [
        (0.0003, 0.0, True, "reproduced"),  # lower bound just above 0
        (-0.0003, 0.0, True, "inconclusive"),  # just below
        (0.002, 0.0, False, "reproduced"),
        (-0.0204, -KEPT, True, "inconclusive"),  # C1's margin
        (-0.0190, -KEPT, False, "reproduced"),
        (-0.0203, 0.0, True, "not reproduced"),  # the upper bound, −0.0003, within BORDER of 0
    ],
)
def test_borderline_is_a_bound_within_half_a_shown_digit(low, threshold, borderline, verdict):
    p = _with_bound(low)
    assert p.interval()[0] == pytest.approx(low, abs=1e-12)
    assert BORDER == 0.0005
    assert p.borderline(threshold) is borderline and p.verdict(threshold) == verdict


@pytest.mark.parametrize("up, down, verdict", [(46, 29, "holds"), (47, 30, "inconclusive")])
def test_borderline_rows_name_their_threshold(tmp_path, up, down, verdict):
    """B3 with a lower bound within BORDER of 0 (46 − 29 and 47 − 30 discordant samples put it at +0.00003
    and −0.0002): the row marks it borderline against '0', whichever side it fell."""
    ours = _bits(0.8, "ours")
    runs = {"All stages": _seeds([ours]), "Random": _seeds([_moved(ours, "random", up=down, down=up)])}
    _compression(tmp_path, "baselines", runs)
    row = _rows(tmp_path, "baselines")["B3"]
    assert row["verdict"] == verdict and row["borderline"] == "0"


# ---- teacher variance: claims replicated on other teachers


@pytest.mark.parametrize("replicate_gain, depends", [(100, False), (-100, True)])
def test_replicated_claims_show_each_teachers_verdict(tmp_path, replicate_gain, depends):
    """B7 holds on the main teacher (3 seeds); teacher_seed1 (one seed, its own teacher) runs the same pair
    again: the same gain there reads 'the same on every teacher', a loss 'depends on the teacher'. C4 is
    restricted to the one pair the replicate ran (the compute-fair one-shot of the full run)."""
    joint = _run(0.75, "joint")
    _compression(
        tmp_path,
        "baselines",
        {"All stages": _seeds(_shifted(joint, "ours", 100, 0)), "First-order (joint)": _seeds(joint)},
    )
    other = _run(0.75, "joint-1", seeds=1)
    up, down = max(replicate_gain, 0), max(-replicate_gain, 0)
    mine = _shifted(other, "ours-1", up, down)
    res, _ = _header(tmp_path, "teacher_seed1")
    res["profile"]["teacher"]["seed"] = 1
    declared = {r.label: r.model_dump(mode="json") for r in load_experiment("teacher_seed1").runs}
    res["runs"] = [
        {"label": label, "spec": declared[label], "seeds": _seeds(v)}
        for label, v in (("All stages", mine), ("First-order (joint)", other))
    ]
    res["teacher"], res["paper"] = _teacher(TEACHER), []
    (tmp_path / "teacher_seed1" / "result.json").write_text(json.dumps(res))
    seal_result(tmp_path / "teacher_seed1" / "result.json")
    everything = [load_experiment(f) for f in experiment_files()]
    row = next(r for r in claim_rows(load_results(tmp_path), everything) if r["id"] == "B7")
    assert row["verdict"] == "holds"  # the main teacher's row is unchanged by the replicate
    expected = "holds" if replicate_gain > 0 else "does not hold (peer better)"
    teachers = [(seed, what, v) for seed, _, what, v in row["teachers"]]  # (seed, seeds, what, verdict)
    assert teachers == [
        (0, "All stages vs First-order (joint)", "holds"),
        (1, "All stages vs First-order (joint)", expected),
    ]
    assert row["teacher_dependent"] is depends


def test_a_replicate_naming_an_unknown_claim_is_an_error(tmp_path):
    exp = load_experiment("teacher_seed1").model_copy(update={"replicates": ["B99"]})
    others = [load_experiment(f) for f in experiment_files() if f.stem != "teacher_seed1"]
    with pytest.raises(ValueError, match="teacher_seed1.yaml: field 'replicates.0': 'B99' names no claim"):
        claim_rows({}, [*others, exp])
