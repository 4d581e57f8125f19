"""Bad input that used to be accepted, coerced or crash late: each gets a one-line error naming the file and
the field (or the option) before any work starts."""

import pytest

from harness.cli import main as cli
from harness.config.files import SpecError
from harness.config.loading import load_experiment, load_profile
from run_all import main as run_all
from tests.test_spec import _profile


@pytest.mark.parametrize(
    "changes, field, rule",
    [
        ({"seeds": [0, 0]}, "seeds", "each seed at most once"),
        ({"seeds": [-1]}, "seeds.0", "greater than or equal to 0"),
        ({"data.seed": -3}, "data.seed", "greater than or equal to 0"),
        ({"teacher.seed": -1}, "teacher.seed", "greater than or equal to 0"),
        ({"measurement.batch_sizes": [0]}, "measurement.batch_sizes.0", "greater than or equal to 1"),
        ({"compression.n_b": True}, "compression.n_b", "valid integer"),  # not coerced to 1
        ({"compression.n_b": "1"}, "compression.n_b", "valid integer"),
        ({"data.sizes.train": 300.0}, "data.sizes.train", "valid integer"),
        ({"compression.alpha": "0.15"}, "compression.alpha", "valid number"),
        (
            {"model.language_model.tie_word_embeddings": "yes"},
            "model.language_model.tie_word_embeddings",
            "bool",
        ),
    ],
)
def test_wrong_types_and_impossible_values_are_refused(tmp_path, changes, field, rule):
    path = _profile(tmp_path, **changes)
    with pytest.raises(SpecError) as e:
        load_profile(path)
    msg = str(e.value)
    assert str(path) in msg and f"field '{field}'" in msg and rule in msg, msg


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = _profile(
        tmp_path, text_edit=lambda t: t.replace("  alpha: 0.15\n", "  alpha: 0.15\n  alpha: 0.5\n")
    )
    with pytest.raises(SpecError, match=r"duplicate key 'alpha'") as e:
        load_profile(path)
    assert str(path) in str(e.value) and "line" in str(e.value)


def test_a_key_given_twice_inside_a_run_is_refused(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: exp\nreproduces: Table 3\nkind: compression\ndescription: x\n"
        "runs:\n  - {label: a, criterion: l1, criterion: l2}\n"
    )
    with pytest.raises(SpecError, match="duplicate key 'criterion'"):
        load_experiment(path)


def test_exponent_floats_are_numbers_not_strings(tmp_path):
    """YAML 1.1 reads `1e-3` as text; strict types would then refuse it, so the loader reads it as a float."""
    path = _profile(tmp_path, text_edit=lambda t: t.replace("lr: 0.001", "lr: 1e-3"))
    assert "lr: 1e-3" in path.read_text()
    assert load_profile(path).compression.lr == pytest.approx(1e-3)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.yaml: not UTF-8 text \(byte 9\)"):
        load_experiment(path)


def test_an_experiment_without_kind_is_reported_as_one(tmp_path, capsys):
    path = tmp_path / "nokind.yaml"
    path.write_text("name: nokind\nreproduces: Table 3\ndescription: x\nruns: [{label: a}]\n")
    assert cli(["validate", str(path), "--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "field 'kind'" in err and "Field required" in err
    assert "compression" not in err  # not read as a profile missing its sections


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_results_folder_problems_are_found_before_any_work(tmp_path, capsys, where):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    target = blocker if where == "file" else blocker / "sub"
    assert run_all(["--profile", "smoke", "--results-dir", str(target), "--only", "teacher"]) == 2
    err = capsys.readouterr().err
    assert "--results-dir" in err and ("is a file" in err if where == "file" else "cannot write" in err)
    assert not (tmp_path / "cache").exists()


def test_cache_folder_that_is_a_file_is_refused_by_the_cli(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.write_text("")
    args = ["run", "teacher", "--profile", "smoke", "--cache-dir", str(cache), "--results-dir", str(tmp_path)]
    assert cli(args) == 2
    assert "--cache-dir" in capsys.readouterr().err


def test_a_render_that_fails_leaves_the_previous_result_folder_as_it_was(tmp_path):
    """result.json is published with its tables and figures, or not at all: a crash while rendering must not
    leave a new result.json beside stale tables (the next run would take it for up to date)."""
    from harness.commands.run import publish_result

    out = tmp_path / "rq1_stagewise"
    out.mkdir()
    (out / "result.json").write_text('{"old": true}')
    (out / "table.md").write_text("old table")

    def broken_render(folder):
        (folder / "table.md").write_text("half a new table")
        raise RuntimeError("matplotlib fell over")

    with pytest.raises(RuntimeError, match="fell over"):
        publish_result(out, {"new": True}, broken_render)
    assert (out / "result.json").read_text() == '{"old": true}' and (
        out / "table.md"
    ).read_text() == "old table"
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # the folder's lock stays
    assert left == ["rq1_stagewise"]  # no temporary folder left behind

    publish_result(out, {"new": True}, lambda folder: (folder / "table.md").write_text("new table"))
    assert (
        '"new": true' in (out / "result.json").read_text() and (out / "table.md").read_text() == "new table"
    )


def test_compression_runs_are_keyed_by_the_teacher_checkpoints_content(tmp_path):
    """Two different checkpoints must never share cached compression runs (they did: the key ignored
    `teacher.checkpoint`); the same content under another name shares them; the harness's eval/ cache beside
    the weights does not change the key."""
    from harness.config.experiment import CompressionRun
    from harness.store import compression_key
    from tests.helpers import tiny

    keys = {}
    for name, seed in (("a", 0), ("b", 1), ("a_copy", 0)):
        model, proc = tiny(seed=seed)
        model.save_pretrained(tmp_path / name)
        proc.save_pretrained(tmp_path / name)
        prof = load_profile("smoke", {"teacher": {"checkpoint": str(tmp_path / name)}})
        keys[name] = compression_key(prof, CompressionRun(label="x"), 0)
    assert keys["a"] != keys["b"] and keys["a"] == keys["a_copy"]
    (tmp_path / "a" / "eval").mkdir()
    (tmp_path / "a" / "eval" / "test_bs50.json").write_text("{}")
    prof = load_profile("smoke", {"teacher": {"checkpoint": str(tmp_path / "a")}})
    assert compression_key(prof, CompressionRun(label="x"), 0) == keys["a"]


def test_a_maad_folder_is_keyed_by_its_content(tmp_path):
    """Rewritten answers (or images) give a new dataset key, so the teacher is retrained, not reused."""
    from harness.store import dataset_key
    from tests.test_synth_ads import _line, _maad_folder

    folder = _maad_folder(tmp_path, [_line()])
    over = {"data": {"source": "maad_folder", "path": str(folder)}, "teacher": {"pretraining": None}}
    prof = load_profile("smoke", over)
    before = dataset_key(prof)
    train = folder / "train.jsonl"
    train.write_text(train.read_text().replace('"red"', '"blue"', 1))
    assert dataset_key(prof) != before


@pytest.mark.parametrize(
    "text, rule",
    [
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_yaml_that_is_not_a_mapping_is_named(tmp_path, text, rule):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rule):
        load_experiment(path)


@pytest.mark.parametrize(
    "args, rule",
    [
        (["--only", "nothing*"], "matches no experiment"),
        (["--num-seeds", "0"], "--num-seeds: must be at least 1"),
        (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    ],
)
def test_run_all_refuses_bad_options_before_any_work(tmp_path, capsys, args, rule):
    common = ["--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")]
    assert run_all([*args, *common]) == 2
    assert rule in capsys.readouterr().err
    assert not (tmp_path / "cache" / "teachers").exists()


def test_an_unknown_experiment_is_named(tmp_path, capsys):
    args = [
        "run",
        "rq9_missing",
        "--profile",
        "smoke",
        "--results-dir",
        str(tmp_path),
        "--cache-dir",
        str(tmp_path),
    ]
    assert cli(args) == 2
    assert "rq9_missing.yaml: file not found" in capsys.readouterr().err
