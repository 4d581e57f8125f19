"""Bad experiment input fails before any work, naming the file, the field and what is allowed."""

import pytest
import yaml

from harness.cli import main
from harness.config.files import SpecError
from harness.config.loading import load_experiment, load_profile, resolve
from harness.config.paths import PROFILES_DIR
from harness.results import spec_hash


def _profile(tmp_path, text_edit=None, **changes):
    """The smoke profile with dotted fields changed (and its YAML text edited by `text_edit`), as bad.yaml."""
    raw = yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    text = yaml.safe_dump(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(text_edit(text) if text_edit else text)
    return path


@pytest.mark.parametrize(
    "changes, field, allowed",
    [
        ({"compression.n_bb": 1}, "compression.n_bb", "allowed keys here: N_att, N_blocks"),
        ({"data.sizes.train": "many"}, "data.sizes.train", "valid integer"),
        ({"compression.alpha": 1.5}, "compression.alpha", "less than or equal to 1"),
        ({"compression.alpha": 0}, "compression.alpha", "greater than 0"),
        (
            {"compression.optimizer": "adamw_8bit", "compression.parallel": "fsdp"},
            "compression.optimizer",
            "adamw_8bit (bitsandbytes) cannot step torch's FSDP shards",
        ),
        (
            {"compression.n_b": 5, "compression.N_blocks": 1},
            "compression.n_b",
            "n_b (5) is larger than N_blocks (1)",
        ),
        (
            {"compression.N_blocks": 2},
            "compression.N_blocks",
            "N_blocks (2) must be below the language model's 2 layers",
        ),
        (
            {"compression.n_h_att": 24},
            "compression.n_h_att",
            "multiple of one key-value group's inner width (32",
        ),
        (
            {"compression.N_ffn": 128},
            "compression.N_ffn",
            "N_ffn (128) must be below intermediate_size (128)",
        ),
        (
            {"model.language_model.num_kv_heads": 3},
            "model.language_model.num_kv_heads",
            "multiple of num_kv_heads (3)",
        ),
        ({"model.language_model.family": "gpt"}, "model.language_model.family", "'llama' or 'qwen2'"),
        ({"teacher.checkpoint": "/nonexistent/teacher"}, "teacher.checkpoint", "has no config.json"),
        # (a MAAD folder has no advertiser catalogue to pretrain on)
        (
            {"data.source": "maad_folder", "teacher.pretraining": None},
            "data.path",
            "needs an existing folder",
        ),
        # a maximum that is not a whole number of steps: the iterative run would stop short of it
        (
            {"compression.N_ffn": 80},
            "compression.N_ffn",
            "N_ffn (80) must be a whole number of steps of n_h_ffn (32), e.g. 64",
        ),
        # 1.5 key-value groups of attention: validated before any work, not a crash at the attention stage
        (
            {"compression.N_att": 48},
            "compression.N_att",
            "N_att (48) must be a whole number of steps of n_h_att (32)",
        ),
        ({"compression.N_input": 20}, "compression.N_input", "whole number of steps of n_d (16)"),
    ],
)
def test_bad_profile_is_rejected_with_file_field_and_rule(tmp_path, changes, field, allowed):
    """The schema's checks and harness/preflight.py's (folders named by the profile), as every command runs
    them."""
    from harness.preflight import checked_profile

    path = _profile(tmp_path, **changes)
    with pytest.raises(SpecError) as e:
        checked_profile(path)
    msg = str(e.value)
    assert str(path) in msg
    assert f"field '{field}" in msg
    assert allowed in msg


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown profile 'tpu'; allowed: cpu, gpu, paper, smoke"):
        load_profile("tpu")


def test_bad_experiment_file(tmp_path):
    path = tmp_path / "oops.yaml"
    path.write_text("name: oops\nreproduces: Table 2\nkind: distill_everything\ndescription: x\n")
    with pytest.raises(SpecError, match=r"field 'kind': Input should be 'original'"):
        load_experiment(path)
    path.write_text("name: other\nreproduces: Table 2\nkind: original\ndescription: x\n")
    with pytest.raises(SpecError, match="field 'name': must equal the file name 'oops'"):
        load_experiment(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_experiment(path)


def test_overrides_are_validated_against_the_profile(tmp_path):
    path = tmp_path / "over.yaml"
    path.write_text(
        "name: over\nreproduces: Table 2\nkind: original\ndescription: x\n"
        "overrides: {compression: {alpha: -1}}\n"
    )
    with pytest.raises(SpecError) as e:
        resolve(path, "smoke")
    assert "overrides from" in str(e.value) and "compression.alpha" in str(e.value)


def test_cli_validate_exits_nonzero_before_running(tmp_path, capsys):
    path = _profile(tmp_path, **{"compression.alpha": 2})
    assert main(["validate", str(path), "--profile", "smoke"]) == 1
    assert "compression.alpha" in capsys.readouterr().err
    assert main(["validate"]) == 0


@pytest.mark.parametrize(
    "body, field, allowed",
    [
        ("runs: []\n", "runs", "needs at least one run"),
        ("runs: [{label: a}, {label: a}]\n", "runs", "labels must be unique"),
        ("runs: [{label: a, stages: [ffn, block]}]\n", "runs.0.stages", "in the order"),
        ("runs: [{label: a, data_fraction: 1.5}]\n", "runs.0.data_fraction", "less than or equal to 1"),
        ("runs: [{label: a, lr: 1}]\n", "runs.0.lr", "allowed keys here: block_criterion, criterion"),
        ("runs: [{label: a, mode: one_shot}]\ntable: stages\n", "table", "needs an iterative first run"),
        (
            "runs: [{label: a}]\nfigures: [pie]\n",
            "figures.0",
            "'sample_size', 'tradeoff', 'curves' or 'budget'",
        ),
        ("runs: [{label: a, target_share: 0.5}]\n", "runs.0.target_share", "only for a single-level run"),
        ("runs: [{label: a, stages: [ffn], target_share: 1.5}]\n", "runs.0.target_share", "less than 1"),
        ("runs: [{label: a, stages: [ffn, ffn]}]\n", "runs.0.stages", "each stage at most once"),
        ("runs: [{label: a, stages: [heads]}]\n", "runs.0.stages.0", "'block', 'ffn'"),
        ("runs: [{label: a, data_fraction: 0}]\n", "runs.0.data_fraction", "greater than 0"),
        ("runs: [{label: a, mode: one_shot, pruner: torch_pruning}]\n", "runs", "iterative runs only"),
        # a claim naming a run the experiment does not have fails here, not in the report
        (
            "runs: [{label: a}, {label: b}]\nclaims: [{id: C9, text: a beats b, test: pairwise,"
            " family: paper, pairs: [{better: a, worse: c}]}]\n",
            "claims.0.pairs.0.worse",
            "'c' is not a run of this experiment (runs: a, b)",
        ),
        (
            "runs: [{label: a}]\nclaims: [{id: C9, text: a is good, test: pairwise, family: paper}]\n",
            "claims.0.pairs",
            "test 'pairwise' needs it",
        ),
        (
            "runs: [{label: a}]\nclaims: [{id: C9, text: a is good, test: trend, family: paper, runs: [a],"
            " pairs: []}]\n",
            "claims.0.runs",
            "at least two runs",
        ),
        (
            "runs: [{label: a}, {label: b, data_fraction: 0.5}]\n"
            "claims: [{id: C9, text: more is better, test: trend, family: paper, runs: [a, b]}]\n",
            "claims.0.runs",
            "growing data_fraction",
        ),
        (
            "runs: [{label: a}]\nclaims: [{id: C9, text: a keeps quality, test: kept_quality, family: paper,"
            " run: a}]\n",
            "claims.0.run",
            "measured only with table: stages",
        ),
        (
            "runs: [{label: a}]\nclaims: [{id: c9, text: lower, test: trend, family: paper}]\n",
            "claims.0.id",
            "pattern",
        ),
        (
            "runs: [{label: a}]\nclaims: [{id: C9, txt: typo, test: trend, family: paper}]\n",
            "claims.0.txt",
            "allowed keys",
        ),
    ],
)
def test_bad_compression_runs_are_rejected(tmp_path, body, field, allowed):
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: exp\nreproduces: Table 3\nkind: compression\ndescription: x\n{body}")
    with pytest.raises(SpecError) as e:
        load_experiment(path)
    assert f"field '{field}'" in str(e.value) and allowed in str(e.value) and str(path) in str(e.value)


INPUTS = {"dataset": "d", "teacher": "t"}  # content hashes of the dataset and the teacher


def test_num_seeds_replaces_the_profile_seeds_but_not_the_spec_hash():
    exp, one = resolve("rq5_hard_label", "smoke")
    _, three = resolve("rq5_hard_label", "smoke", num_seeds=3)
    assert one.seeds == [0] and three.seeds == [0, 1, 2]
    assert spec_hash(exp, one, INPUTS) == spec_hash(exp, three, INPUTS)


def test_spec_hash_covers_what_determines_the_numbers_only():
    """Labels, paper rows, claims and wording name rows; rewording them must not rerun an hour of work."""
    exp, prof = resolve("rq6_pairwise", "smoke")
    runs = [r.model_copy(update={"label": f"{r.label}!", "paper": None}) for r in exp.runs]
    reworded = exp.model_copy(update={"runs": runs, "claims": [], "description": "new", "figures": []})
    assert spec_hash(reworded, prof, INPUTS) == spec_hash(exp, prof, INPUTS)
    other = exp.model_copy(
        update={"runs": [exp.runs[0].model_copy(update={"variant": "kl_only"}), *runs[1:]]}
    )
    assert spec_hash(other, prof, INPUTS) != spec_hash(exp, prof, INPUTS)
    assert spec_hash(exp.model_copy(update={"measure": True}), prof, INPUTS) != spec_hash(exp, prof, INPUTS)
    # the same paths with other content (rewritten MAAD files, a replaced checkpoint) rerun the experiment
    assert spec_hash(exp, prof, {**INPUTS, "dataset": "other"}) != spec_hash(exp, prof, INPUTS)


def test_include_puts_the_included_runs_and_paper_rows_first():
    rq3, rq4 = load_experiment("rq3_single_level"), load_experiment("rq4_one_shot")
    assert rq4.runs[: len(rq3.runs)] == rq3.runs and rq4.paper == rq3.paper
    assert [r.label for r in rq4.runs[len(rq3.runs) :]][0] == "Block only (one-shot)"


@pytest.mark.parametrize(
    "body, message",
    [
        ("include: [missing]\nruns: [{label: x}]\n", "field 'include': no experiment 'missing'"),
        ("include: [base]\nruns: [{label: a}]\n", "field 'runs': labels must be unique"),
        ("include: [me]\nruns: [{label: x}]\n", "includes me back (a cycle)"),
        ("include: base\nruns: [{label: x}]\n", "field 'include': Input should be a valid list"),
    ],
)
def test_bad_include_names_the_file_and_field(tmp_path, body, message):
    head = "reproduces: Table 3\nkind: compression\ndescription: x\n"
    (tmp_path / "base.yaml").write_text(f"name: base\n{head}runs: [{{label: a}}]\n")
    (tmp_path / "me.yaml").write_text(f"name: me\n{head}{body}")
    with pytest.raises(SpecError) as e:
        load_experiment(tmp_path / "me.yaml")
    assert message in str(e.value) and "me.yaml" in str(e.value)
