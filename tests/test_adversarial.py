"""Bad arguments and hostile conditions end in one clear line and a non-zero exit, before any work; a closed
pipe and Ctrl-C end quietly; a wait on another process's lock says who holds it.

Why: a refusal that comes after minutes of work, prints a traceback, or silently does something else costs a
researcher far more than a clear `error:` line at once (issue: "No traceback, no silent wrong, no hang")."""

import json
import subprocess
import sys
import textwrap

import pytest

from harness import cache, cli
from harness.commands import run
from harness.commands.folders import results_root
from harness.config.paths import ROOT


def _refused(capsys, argv: list[str]) -> str:
    """Runs the CLI in-process; asserts exit status 2, one line on stderr starting 'error:', no traceback."""
    with pytest.raises(SystemExit) as e:
        code = cli.main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("memory", ["24", "0GB", "-5GB", "infGB", "nanGB", "GB", "twentyGB", "24XB", ""])
def test_plan_memory_needs_a_positive_finite_size_with_its_unit(capsys, memory):
    line = _refused(capsys, ["plan", f"--memory={memory}"])
    assert "--memory" in line and "24GB" in line


@pytest.mark.parametrize("tflops", ["0", "-1", "nan", "inf", "fast"])
def test_plan_tflops_must_be_a_positive_finite_rate(capsys, tflops):
    assert "--tflops" in _refused(capsys, ["plan", f"--tflops={tflops}"])


@pytest.mark.parametrize(
    "flag, value",
    [("--text-tokens", "-5"), ("--text-tokens", "0"), ("--answer-tokens", "0"), ("--text-tokens", "1.5")],
)
def test_plan_token_counts_are_at_least_one(capsys, flag, value):
    assert flag in _refused(capsys, ["plan", f"{flag}={value}"])


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--samples", "-5"], "--samples"),
        (["--samples", "0"], "--samples"),
        (["--amount", "0"], "--amount"),
        (["--amount", "-2"], "--amount"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**64)], "--seed"),
    ],
)
def test_prune_numbers_are_checked_by_the_parser(capsys, extra, flag):
    argv = ["prune", "--level", "ffn", "--amount", "8", "--out", "x", f"{extra[0]}={extra[1]}"]
    assert flag in _refused(capsys, argv)


@pytest.fixture
def no_work(monkeypatch):
    """Any dataset or teacher work fails the test: a refusal must come first (patched where the prune
    command and the recipes look them up)."""
    import harness.commands.prune as prune
    import harness.recipes.teacher as teacher
    import harness.store as store

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module in (prune, store):
        monkeypatch.setattr(module, "get_dataset", forbidden)
    for module in (prune, teacher):
        monkeypatch.setattr(module, "get_teacher", forbidden)


def test_prune_refuses_a_used_out_folder_before_any_work(capsys, tmp_path, no_work):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    argv = ["prune", "--profile", "smoke", "--level", "ffn", "--amount", "8", "--out", str(tmp_path / "out")]
    assert "--out" in _refused(capsys, argv)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("flag", ["--checkpoint", "--teacher"])
def test_prune_refuses_a_folder_that_is_no_checkpoint_before_any_work(capsys, tmp_path, no_work, flag):
    argv = ["prune", "--profile", "smoke", "--level", "ffn", "--amount", "8", "--out", str(tmp_path / "o")]
    argv += [flag, str(tmp_path / "missing")]
    if flag == "--teacher":
        argv += ["--loss", "teacher_kl"]
    line = _refused(capsys, argv)
    assert flag in line and "config.json" in line


@pytest.mark.parametrize("num_seeds", ["0", "-3", "two"])
def test_run_num_seeds_is_a_positive_count(capsys, num_seeds):
    assert "--num-seeds" in _refused(capsys, ["run", "rq5_hard_label", f"--num-seeds={num_seeds}"])


def test_report_refuses_a_folder_that_does_not_exist(capsys, tmp_path):
    line = _refused(capsys, ["report", "--results-dir", str(tmp_path / "nowhere")])
    assert "nowhere" in line and "is not a folder" in line


def test_verify_refuses_a_folder_that_does_not_exist(capsys, tmp_path):
    line = _refused(capsys, ["verify", "--cache-dir", str(tmp_path / "nowhere")])
    assert "nowhere" in line and "is not a folder" in line


def test_an_unknown_command_is_one_line(capsys):
    assert "invalid choice" in _refused(capsys, ["frobnicate"])


def test_ctrl_c_ends_with_one_line_on_resuming(capsys, monkeypatch, tmp_path):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "cmd_ls", interrupted)  # the command is looked up when it runs
    assert cli.main(["ls", "--cache-dir", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted:") and str(tmp_path) in err[0]
    assert "resumes" in err[0]


def test_a_closed_pipe_ends_quietly():
    """`python -m harness ls | head -1`: the reader leaves after one line; no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "ls"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_profile_given_as_a_path_names_its_results_folder_by_its_stem():
    assert results_root("/a/b/mine.yaml") == ROOT / "results-mine"
    assert results_root("smoke") == ROOT / "results-smoke"
    assert results_root("cpu") == ROOT / "results"


def test_waiting_on_a_lock_says_who_holds_it(tmp_path, monkeypatch, capsys):
    """Another process holds an entry's lock for a while: the waiter names its pid and host, and goes on
    once it is released."""
    entry = tmp_path / "entry"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from harness.cache import entry_lock
                with entry_lock(Path({str(entry)!r})):
                    print("held", flush=True)
                    time.sleep(1.5)
                """
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    monkeypatch.setattr(cache, "WAIT_NOTICE_S", (0.3, 0.3))
    with cache.entry_lock(entry):
        note = json.loads((tmp_path / ".entry.holder").read_text())
    assert holder.wait() == 0
    err = capsys.readouterr().err
    assert f"held by pid {holder.pid} on " in err and str(entry) in err and "waiting" in err
    assert note["pid"] != holder.pid and not (tmp_path / ".entry.holder").exists()


# ---- YAML: every number finite and within what the code holds; aliases bounded; merge keys work


def _profile_with(tmp_path, edit) -> str:
    """The smoke profile with `edit` applied to its YAML mapping, written to a file; its path."""
    import yaml

    data = yaml.safe_load((ROOT / "experiments" / "profiles" / "smoke.yaml").read_text())
    edit(data)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "field, edit",
    [
        ("compression.gamma", lambda d: d["compression"].update(gamma=float("inf"))),
        ("compression.lr", lambda d: d["compression"].update(lr=float("nan"))),
        ("measurement.min_duration_s", lambda d: d["measurement"].update(min_duration_s=float("inf"))),
        ("seeds.0", lambda d: d.update(seeds=[2**64])),
        ("teacher.seed", lambda d: d["teacher"].update(seed=2**40)),
        ("data.sizes.train", lambda d: d["data"]["sizes"].update(train=10**30)),
    ],
)
def test_profile_numbers_are_finite_and_within_range(tmp_path, field, edit):
    """Refused by validation, naming the file and the field, before any run could overflow or never end."""
    from harness.config.files import SpecError
    from harness.config.loading import load_profile

    with pytest.raises(SpecError, match=rf"edited.yaml: invalid profile[\s\S]*field '{field}'"):
        load_profile(_profile_with(tmp_path, edit))


def test_paper_values_must_be_numbers(tmp_path):
    from harness.config.files import SpecError
    from harness.config.loading import load_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: exp\nreproduces: Table 3\nkind: compression\ndescription: x\n"
        "runs: [{label: a, paper: {row: A, overall: .nan}}]\n"
    )
    with pytest.raises(SpecError, match=r"field 'runs.0.paper.overall': Input should be a finite number"):
        load_experiment(path)


def test_an_alias_bomb_is_refused_with_a_bounded_message(tmp_path):
    """Seven levels of nine aliases (4.8 million strings once expanded) in a field that wants a string: the
    error shows a bounded excerpt of the value instead of walking all of it."""
    from harness.config.files import SpecError
    from harness.config.loading import load_experiment

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "\n".join(
            [
                "x:",
                *("  " + line for line in levels),
                "name: bomb",
                "reproduces: Table 3",
                "kind: compression",
                "description: *g",
                "runs: [{label: a}]",
            ]
        )
        + "\n"
    )
    with pytest.raises(SpecError) as e:
        load_experiment(path)
    assert "field 'description': Input should be a valid string" in str(e.value)
    assert len(str(e.value)) < 3000


def test_yaml_merge_keys_work(tmp_path):
    from harness.config.loading import load_experiment

    path = tmp_path / "merge.yaml"
    path.write_text(
        "name: merge\nreproduces: Table 3\nkind: compression\ndescription: x\n"
        "runs:\n  - &base {label: a, criterion: l2}\n  - {<<: *base, label: b}\n"
    )
    assert [(r.label, r.criterion) for r in load_experiment(path).runs] == [("a", "l2"), ("b", "l2")]


# ---- checkpoints: every failure to read one is one line naming the folder and the file, before any work


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny BLIP-2 saved with save_pretrained and its processor: the good checkpoint the cases spoil."""
    from harness.models.public import save_lmm
    from tests.helpers import tiny

    folder = tmp_path_factory.mktemp("ckpt") / "good"
    model, processor = tiny()
    save_lmm(model, processor, folder)
    return folder


def _spoil(saved, tmp_path, how: str):
    import shutil

    folder = tmp_path / how
    shutil.copytree(saved, folder)
    weights, config = folder / "model.safetensors", folder / "config.json"
    if how == "config_not_json":
        config.write_text("{not json")
    elif how == "config_not_an_object":
        config.write_text("[1, 2]")
    elif how == "empty_folder":
        shutil.rmtree(folder)
        folder.mkdir()
    elif how == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "corrupt_header":
        weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])
    elif how == "no_weights":
        weights.unlink()
    elif how in ("custom_code", "not_blip2", "wrong_shapes"):
        data = json.loads(config.read_text())
        if how == "custom_code":
            data["auto_map"] = {"AutoModel": "modeling_evil.Evil"}
        elif how == "not_blip2":
            data["model_type"] = "llama"
        else:
            data["text_config"]["intermediate_size"] += 8
        config.write_text(json.dumps(data))
    elif how == "no_processor":
        for f in folder.iterdir():
            if f.name not in ("config.json", "model.safetensors", "generation_config.json"):
                f.unlink()
    return folder


CONFIG_CASES = ["config_not_json", "config_not_an_object", "empty_folder", "custom_code", "not_blip2"]
WEIGHT_CASES = ["truncated_weights", "corrupt_header", "no_weights", "wrong_shapes", "no_processor"]


@pytest.mark.parametrize("how", CONFIG_CASES + WEIGHT_CASES)
def test_prune_refuses_a_spoilt_checkpoint_in_one_line(capsys, saved, tmp_path, no_work, how):
    folder = _spoil(saved, tmp_path, how)
    argv = ["prune", "--profile", "smoke", "--level", "ffn", "--amount", "8", "--out", str(tmp_path / "o")]
    line = _refused(capsys, [*argv, "--checkpoint", str(folder)])
    assert str(folder) in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("how", CONFIG_CASES)
def test_plan_refuses_a_spoilt_config_in_one_line(capsys, saved, tmp_path, how):
    folder = _spoil(saved, tmp_path, how)
    assert str(folder) in _refused(capsys, ["plan", str(folder), "--profile", "smoke"])


def test_the_good_checkpoint_passes_the_same_reader(saved):
    """The cases above fail for their spoilt file alone: the checkpoint they start from loads."""
    from harness.models.public import load_lmm

    model, processor = load_lmm(saved)
    assert model.config.model_type == "blip-2" and processor.tokenizer is not None


# ---- result files and caches: nothing altered is rendered or taken for up to date


@pytest.fixture
def results_copy(tmp_path):
    """A copy of one committed result folder (rq5_hard_label), as `report` and a cached run meet it."""
    import shutil

    root = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "rq5_hard_label", root / "rq5_hard_label")
    return root, root / "rq5_hard_label" / "result.json"


def _edit_overall(path, value: float = 0.999) -> None:
    data = json.loads(path.read_text())
    data["runs"][0]["seeds"][0]["accuracy"]["overall"] = value
    path.write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize("how", ["edited", "edited_and_resealed", "not_json", "unsealed"])
def test_report_renders_nothing_from_an_altered_result(capsys, results_copy, how):
    from harness.results import seal_result

    root, path = results_copy
    table = (path.parent / "table.md").read_text()
    if how == "not_json":
        path.write_text("{cut short")
        seal_result(path)
    elif how == "unsealed":
        path.with_name("result.json.sha256").unlink()
    else:
        _edit_overall(path)
        if how == "edited_and_resealed":  # the seal is consistent, the number is not: the record decides
            seal_result(path)
    line = _refused(capsys, ["report", "--results-dir", str(root)])
    assert str(path) in line
    expected = {
        "edited": "does not match its seal",
        "edited_and_resealed": "runs.0.seeds.0.accuracy.overall is 0.999 but its per-sample record gives",
        "not_json": "not valid JSON",
        "unsealed": "no seal",
    }[how]
    assert expected in line
    assert (path.parent / "table.md").read_text() == table  # nothing re-rendered from it


def test_a_cached_run_refuses_an_altered_result(capsys, results_copy, tmp_path):
    root, path = results_copy
    _edit_overall(path)
    argv = ["run", "rq5_hard_label", "--results-dir", str(root), "--cache-dir", str(tmp_path / "cache")]
    assert "does not match its seal" in _refused(capsys, argv)


def test_a_run_refuses_a_file_where_its_result_folder_goes(capsys, tmp_path):
    (tmp_path / "rq5_hard_label").write_text("not a folder")
    argv = ["run", "rq5_hard_label", "--profile", "smoke", "--results-dir", str(tmp_path)]
    line = _refused(capsys, [*argv, "--cache-dir", str(tmp_path / "cache")])
    assert "is a file where the result folder of rq5_hard_label goes" in line
    assert not (tmp_path / "cache").exists()  # refused before any work


@pytest.mark.parametrize(
    "manifest", ['{"files": [1, 2]}', '{"files": {"a.bin": 5}}', '{"files": {"a.bin": {"size": "9"}}}', "[]"]
)
def test_verify_reports_a_manifest_of_the_wrong_shape(capsys, tmp_path, manifest):
    entry = tmp_path / "cache" / "datasets" / "synth-x"
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text(manifest)
    assert cli.main(["verify", "--cache-dir", str(tmp_path / "cache")]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err and f"corrupt: {entry / 'manifest.json'}" in err and "1 corrupt" in out


def test_run_all_refuses_an_altered_result_in_one_line(capsys, results_copy, tmp_path):
    import run_all

    _, path = results_copy
    _edit_overall(path)
    argv = [
        "--only",
        "rq5_hard_label",
        "--results-dir",
        str(path.parent.parent),
        "--cache-dir",
        str(tmp_path),
    ]
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not match its seal" in err[0]


def test_run_all_ends_a_ctrl_c_in_one_line(capsys, monkeypatch, tmp_path):
    import run_all

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_all, "run_checked", interrupted)
    argv = ["--profile", "smoke", "--only", "rq5_hard_label", "--results-dir", str(tmp_path / "r")]
    assert run_all.main([*argv, "--cache-dir", str(tmp_path / "c")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted:") and str(tmp_path / "c") in err[0]


def test_prune_checks_the_amount_on_the_profiles_teacher_before_any_work(capsys, tmp_path, no_work):
    """Without --checkpoint the teacher would be trained first: --amount is checked on the stand-in's shape
    (the smoke LM has 2 blocks) before that."""
    argv = ["prune", "--profile", "smoke", "--level", "block", "--amount", "5", "--out", str(tmp_path / "o")]
    line = _refused(capsys, argv)
    assert "block" in line and not (tmp_path / "o").exists()
