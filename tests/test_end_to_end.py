"""The smoke profile end to end, as a user runs it: run_all.py, then a cached rerun, then `report`."""

import json

import pytest

import run_all
from harness.cli import main as cli_main
from harness.spec import experiment_files


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
    for bs in (1, 32):
        speed = row["throughput"][f"batch_{bs}"]
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
    # an impossible request fails with a message and writes nothing
    assert (
        cli_main(["prune", *common, "--level", "attention", "--amount", "24", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "does not divide into whole key-value groups" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
