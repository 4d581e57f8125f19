"""The smoke profile end to end, as a user runs it: run_all.py, then a cached rerun, then `report`."""

import json
import re

import pytest

import run_all
from harness.cli import main as cli_main
from harness.config.loading import experiment_files

pytestmark = pytest.mark.slow  # whole smoke runs and subprocesses: not in the fast subset


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    args = [
        "--profile",
        "smoke",
        "--results-dir",
        str(root / "results"),
        "--cache-dir",
        str(root / "cache"),
        "--quiet",
    ]
    assert run_all.main(args) == 0
    return root, args


def test_every_experiment_writes_result_and_tables(smoke):
    root, _ = smoke
    for f in experiment_files():
        out = root / "results" / f.stem
        assert (
            (out / "result.json").is_file() and (out / "table.md").is_file() and (out / "table.tex").is_file()
        )


def test_teacher_result_carries_provenance_and_the_paper_row(smoke):
    root, _ = smoke
    res = json.loads((root / "results" / "teacher" / "result.json").read_text())
    assert res["profile"]["name"] == "smoke" and res["spec_hash"]
    assert {"git", "versions", "date"} <= set(res["provenance"]) and "dirty" in res["provenance"]["git"]
    assert res["provenance"]["versions"]["torch"]
    assert res["device"]["torch_threads"] >= 1 and res["device"]["dtype"] == "float32"
    row = res["rows"][0]
    assert 0.0 <= row["accuracy"]["overall"] <= 1.0
    assert set(row["accuracy"]) >= {"color", "manifestation", "content", "logo", "style"}
    assert row["parameters"]["total"] == sum(
        row["parameters"][k]
        for k in ("vision_model", "qformer", "language_projection", "language_model", "query_tokens")
    )
    speeds = {t["batch_size"]: t for t in row["throughput"]}
    for bs in (1, 32):
        speed = speeds[bs]
        assert speed["iterations"] >= res["profile"]["measurement"]["min_iterations"]
        assert len(speed["latencies_ms"]) == speed["iterations"] and speed["samples_per_s"] > 0
    table = (root / "results" / "teacher" / "table.md").read_text()
    assert "Original AntGMM — paper" in table and "0.928" in table and "— ours" in table
    ceiling = res["rows"][1]
    assert ceiling["row"].startswith("Oracle ceiling") and 0.8 < ceiling["accuracy"]["overall"] < 1.0


def test_rerun_is_cached_and_renders_identical_tables(smoke, capsys):
    root, args = smoke
    before = {p: p.read_bytes() for p in (root / "results").rglob("*.*") if p.name != "result.json"}
    capsys.readouterr()
    assert run_all.main(args) == 0
    assert ": cached in" in capsys.readouterr().out
    assert cli_main(["report", "--profile", "smoke", "--results-dir", str(root / "results")]) == 0
    assert {p: p.read_bytes() for p in (root / "results").rglob("*.*") if p.name != "result.json"} == before


def test_same_seed_retrains_to_the_same_accuracy(smoke, tmp_path):
    root, _ = smoke
    first = json.loads((root / "results" / "teacher" / "result.json").read_text())
    assert (
        cli_main(
            [
                "run",
                "teacher",
                "--profile",
                "smoke",
                "--results-dir",
                str(tmp_path / "r"),
                "--cache-dir",
                str(tmp_path / "c"),
                "--quiet",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "r" / "teacher" / "result.json").read_text())
    assert again["runs"] == first["runs"]
    assert again["rows"][0]["accuracy"] == first["rows"][0]["accuracy"]
    assert again["teacher_training"]["curves"] == first["teacher_training"]["curves"]


def test_cli_prunes_the_cached_teacher_into_a_standard_checkpoint(smoke, tmp_path, capsys):
    from transformers import Blip2ForConditionalGeneration

    root, _ = smoke
    common = ["--profile", "smoke", "--cache-dir", str(root / "cache"), "--quiet"]
    assert (
        cli_main(["prune", *common, "--level", "ffn", "--amount", "32", "--out", str(tmp_path / "ffn")]) == 0
    )
    assert "ffn: removed 32 structure(s)" in capsys.readouterr().out
    pruned = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "ffn")
    assert pruned.config.text_config.intermediate_size == 128 - 32
    info = json.loads((tmp_path / "ffn" / "pruning.json").read_text())
    assert info["parameters_after"]["total"] < info["parameters_before"]["total"]
    assert (info["device"]["device"], info["device"]["dtype"]) == ("cpu", "float32")  # the smoke profile's
    card = (tmp_path / "ffn" / "README.md").read_text()  # a Hugging Face model card
    assert card.startswith("---\nlibrary_name: transformers\n") and "| 1 | ffn | 32 |" in card
    assert "python -m harness evaluate --checkpoint" in card and "Harness commit" in card
    # an impossible request fails with a message and writes nothing
    assert (
        cli_main(["prune", *common, "--level", "attention", "--amount", "24", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "does not divide into whole key-value groups" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_evaluate_scores_the_teacher_and_a_pruned_checkpoint_and_compares_them(smoke, tmp_path, capsys):
    """`python -m harness evaluate`: the teacher's accuracy as the teacher experiment recorded it, a pruned
    checkpoint's, each with its sample log, and their paired Δ with its 95% interval."""
    from harness import sample_log

    root, _ = smoke
    common = ["--profile", "smoke", "--cache-dir", str(root / "cache"), "--quiet"]
    pruned = tmp_path / "pruned"
    assert cli_main(["prune", *common, "--level", "ffn", "--amount", "96", "--out", str(pruned)]) == 0
    from harness.config.loading import load_profile
    from harness.store import teacher_dir as teacher_folder

    teacher_dir = teacher_folder(load_profile("smoke"), root / "cache")
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        *common,
        "--checkpoint",
        str(teacher_dir),
        "--compare",
        str(pruned),
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "paired over the same samples: Δ accuracy (--checkpoint − --compare)" in printed
        and "95% CI" in printed
    )
    a, b = (json.loads((out / x / "evaluation.json").read_text()) for x in ("a", "b"))
    recorded = json.loads((root / "results" / "teacher" / "result.json").read_text())["rows"][0]["accuracy"]
    assert a["accuracy"] == recorded  # the same protocol, split and batch size as every result
    assert a["prompt"] is None and b["prompt"] is None  # folders the harness wrote: the stand-in's prompt
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["delta"] == pytest.approx(a["accuracy"]["overall"] - b["accuracy"]["overall"])
    low, high = comparison["interval_95"]
    assert low < comparison["delta"] < high and f"[{low:+.3f}, {high:+.3f}]" in printed
    log = sample_log.read(out / "b" / "samples.jsonl.gz")
    assert sample_log.correct_bits(log) == b["accuracy"]["correct"]
    # bad input: refused in one line, nothing written
    assert (
        cli_main(["evaluate", *common, "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "--checkpoint" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli_main(["evaluate", *common, "--checkpoint", str(pruned), "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err


def test_every_paper_figure_is_rendered(smoke):
    root, _ = smoke
    res = root / "results"
    for folder, stem in [
        ("rq1_stagewise", "figure_6_sawtooth"),
        ("rq1_stagewise", "figure_10_size"),
        ("rq1_stagewise", "figure_11_log2size"),
        ("rq2_sample_size", "figure_7_sample_size"),
        ("rq5_hard_label", "figure_8_distillation"),
        ("rq6_pairwise", "figure_8_distillation"),
    ]:
        for ext in ("png", "pdf"):
            assert (res / folder / f"{stem}.{ext}").stat().st_size > 1000


def test_shared_runs_are_computed_once(smoke):
    root, _ = smoke
    hashes: dict[str, set] = {}
    for f in experiment_files():
        res = json.loads((root / "results" / f.stem / "result.json").read_text())
        for run in res["runs"] if isinstance(res.get("runs"), list) else []:
            spec = {k: v for k, v in run["spec"].items() if k not in ("label", "paper")}
            # the same run compresses the same teacher: teacher_seed* experiments compress other ones
            key = json.dumps({**spec, "teacher": res["profile"]["teacher"]}, sort_keys=True)
            hashes.setdefault(key, set()).update(s["run"] for s in run["seeds"])
    full = [
        h
        for k, h in hashes.items()
        if '"mode": "iterative"' in k and "block" in k and "hidden" in k and '"seed": 0' in k
    ]
    assert all(len(h) == 1 for h in hashes.values())  # same variant + seed -> same run, whichever experiment
    assert len(full) >= 4  # the full run under several variants (loss, data fraction) ...
    runs_on_disk = {p.name.removeprefix("run-") for p in (root / "cache" / "compression").glob("run-*")}
    assert runs_on_disk == set().union(*hashes.values())  # ... and each one computed exactly once


def test_claims_report_has_a_verdict_for_every_claim(smoke):
    root, _ = smoke
    text = (root / "results" / "claims.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| C\d", line)]
    assert [r.split()[1] for r in rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    verdict = r"(reproduced|not reproduced|inconclusive)"
    for r in rows:  # on the smoke profile a premise may fail: the verdict then says the claim is untestable
        assert re.search(
            rf"\| (\*\*{verdict}\*\*|\*\*untestable on this stand-in\*\* \([P0-9, ]+ fails?; the runs alone: "
            rf"{verdict}[^|]*\)) \| {verdict} \| [^|]+ \|$",
            r,
        ), r
    premises = [line for line in text.splitlines() if re.match(r"\| P\d", line)]
    assert [r.split()[1].rstrip(":") for r in premises] == ["P1", "P2", "P3", "P4", "P5"]
    assert all(re.search(r"\*\*(holds|fails)\*\* \| — \| [^|]+ \|$", r) for r in premises)


def test_more_seeds_reuse_the_first_and_fewer_seeds_are_served_from_the_result(smoke, tmp_path, capsys):
    import shutil

    root, _ = smoke
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    common = [
        "--profile",
        "smoke",
        "--results-dir",
        str(results),
        "--cache-dir",
        str(root / "cache"),
        "--quiet",
    ]
    assert cli_main(["run", "rq5_hard_label", "--num-seeds", "2", *common]) == 0
    res = json.loads((results / "rq5_hard_label" / "result.json").read_text())
    first = json.loads((root / "results" / "rq5_hard_label" / "result.json").read_text())
    assert res["seeds"] == [0, 1] and [len(r["seeds"]) for r in res["runs"]] == [2, 2]
    assert res["runs"][0]["seeds"][0]["accuracy"] == first["runs"][0]["seeds"][0]["accuracy"]
    assert res["runs"][0]["seeds"][0]["seconds_this_call"] < res["runs"][0]["seeds"][1]["seconds_this_call"]
    assert "±" in (results / "rq5_hard_label" / "table.md").read_text()
    capsys.readouterr()
    assert cli_main(["run", "rq5_hard_label", *common]) == 0
    assert "cached" in capsys.readouterr().out


def test_pruning_curves_start_at_the_teacher_and_remove_a_step_at_a_time(smoke):
    root, _ = smoke
    res = json.loads((root / "results" / "pruning_curves" / "result.json").read_text())
    teacher = res["teacher"]["accuracy"]
    assert {(c["level"], c["criterion"]) for c in res["curves"]} >= {
        ("block", "last"),
        ("ffn", "first_order"),
    }
    for c in res["curves"]:
        first, *rest = c["points"]
        assert first["step"] == 0 and first["accuracy"]["correct"] == teacher["correct"]  # no pruning yet
        assert [p["step"] for p in rest] == list(range(1, len(rest) + 1))
        params = [p["params_lm"] for p in c["points"]]
        assert params == sorted(params, reverse=True) and len(set(params)) == len(params)
    rows = {line.split(":")[0][2:] for line in (root / "results" / "claims.md").read_text().splitlines()}
    assert {"B1c", "B2c", "B3c", "B4c"} <= rows


def test_budget_map_runs_one_shot_in_both_readings(smoke):
    """As written: E epochs once; compute-fair: E × the iterative run's steps, at every budget."""
    root, _ = smoke
    res = json.loads((root / "results" / "budget_sensitivity" / "result.json").read_text())
    runs = {r["label"]: r for r in res["runs"]}
    for e in ("0.08", "1"):
        iterative = runs[f"Iterative (E {e})"]["seeds"][0]
        assert runs[f"One-shot as written (E {e})"]["seeds"][0]["epochs_used"] == pytest.approx(float(e))
        fair = runs[f"One-shot compute-fair (E {e})"]["seeds"][0]["epochs_used"]
        assert (
            fair
            == pytest.approx(iterative["epochs_used"])
            == pytest.approx(float(e) * len(iterative["trace"]))
        )
    table = (root / "results" / "budget_sensitivity" / "table.md").read_text()
    assert "C4, one-shot as written" in table and "95% CI" in table


def test_a_second_seed_recomputes_only_the_random_curves(smoke, tmp_path):
    """Every criterion but random is a function of the teacher and D_p: its curve is computed once and
    shared by every seed; random curves are drawn anew per seed."""
    root, _ = smoke
    cache = tmp_path / "cache"
    import shutil

    shutil.copytree(root / "cache", cache)
    before = set((cache / "curves").glob("curve-*.json"))
    args = ["--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(cache), "--quiet"]
    assert cli_main(["run", "pruning_curves", "--num-seeds", "2", *args]) == 0
    res = json.loads((tmp_path / "r" / "pruning_curves" / "result.json").read_text())
    new = set((cache / "curves").glob("curve-*.json")) - before
    randoms = {(c["level"], c["seed"]) for c in res["curves"] if c["criterion"] == "random"}
    assert len(new) == len({lv for lv, s in randoms if s == 1})  # one new curve per level with a random one
    by = {(c["level"], c["criterion"], c["seed"]): c["points"] for c in res["curves"]}
    again = {(lv, cr): pts == by[(lv, cr, 0)] for (lv, cr, s), pts in by.items() if s == 1}
    assert all(same for (_, cr), same in again.items() if cr != "random")
    assert not all(same for (_, cr), same in again.items() if cr == "random")  # other draws, other curves
