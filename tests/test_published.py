"""The published teacher (harness/store.py PUBLISHED, `python -m harness publish`): a store without the
profile's teacher takes the repository's copy of the same teacher key instead of training one, a copy that
does not match its manifest is not used, and --rebuild still trains."""

import pytest
import torch

from harness.cache import verify_manifest
from harness.cli import main as cli
from harness.config.loading import load_profile
from harness.recipes import teacher as recipe
from harness.recipes.teacher import get_teacher
from harness.store import get_dataset


@pytest.mark.slow
def test_a_fresh_store_compresses_the_published_teacher(tmp_path, monkeypatch):
    from harness import store

    monkeypatch.setattr(store, "PUBLISHED", tmp_path / "published")
    monkeypatch.setattr(store, "_REBUILD", None)
    prof = load_profile("smoke")
    first, _, tdir, _ = get_teacher(prof, tmp_path / "a", get_dataset(prof, tmp_path / "a", False), False)
    assert cli(["publish", "--profile", "smoke", "--cache-dir", str(tmp_path / "a")]) == 0
    published = tmp_path / "published" / tdir.name
    verify_manifest(published)
    assert not (published / "eval").exists()

    trained = []
    real = recipe.train_teacher
    monkeypatch.setattr(recipe, "train_teacher", lambda *a, **k: trained.append(1) or real(*a, **k))
    data = get_dataset(prof, tmp_path / "b", False)
    again, _, tdir_b, _ = get_teacher(prof, tmp_path / "b", data, False)
    assert trained == [] and tdir_b.name == tdir.name and (tdir_b / "config.json").is_file()
    a, b = first.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    (tdir_b / "model.safetensors").write_bytes(b"cut short")  # a corrupt store copy: copied again
    get_teacher(prof, tmp_path / "b", data, False)
    assert trained == [] and verify_manifest(tdir_b)

    store.rebuild_entries()  # --rebuild: trained anew, not copied
    get_teacher(prof, tmp_path / "b", data, False)
    assert trained == [1]


def test_a_published_teacher_that_does_not_match_its_manifest_is_not_used(tmp_path, monkeypatch, capsys):
    from harness import store

    monkeypatch.setattr(store, "PUBLISHED", tmp_path / "published")
    folder = tmp_path / "published" / "teacher-0123"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert store.published_teacher(tmp_path / "cache" / "teachers" / "teacher-0123") is None
    assert "published teacher not used" in capsys.readouterr().err


def test_publish_without_a_trained_teacher_says_how_to_get_one(tmp_path, capsys):
    assert cli(["publish", "--profile", "smoke", "--cache-dir", str(tmp_path)]) == 2
    assert "train it first (python run_all.py --profile smoke --only teacher)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_published_cpu_teacher_is_the_one_results_teacher_evaluated(tmp_path):
    """published/teachers/ holds the cpu profile's teacher, the one results/ was computed from (the same
    teacher key), and it answers the test samples as results/teacher recorded. Only the first 400 samples
    are scored, to keep the test short; kernels of another CPU may flip a near-tie, so agreement must be
    99%, not 100%."""
    from harness.config.paths import ROOT
    from harness.evaluate import evaluate
    from harness.models.public import load_lmm
    from harness.results import load_result, unpack
    from harness.store import published_teacher, teacher_dir

    prof = load_profile("cpu")
    tdir = teacher_dir(prof, tmp_path)
    folder = published_teacher(tdir)
    assert folder is not None, f"no published {tdir.name}: python -m harness publish --profile cpu"
    res = load_result(ROOT / "results" / "teacher" / "result.json")
    assert tdir.name == f"teacher-{res.runs.teacher}"
    n = 400
    test = get_dataset(prof, tmp_path, False)["test"].select(range(n))
    model, processor = load_lmm(folder)
    acc = evaluate(model, processor, test, prof.evaluation_batch_size)
    teacher_row = next(r for r in res.rows if r.row.startswith("Original"))
    recorded = unpack(teacher_row.accuracy.correct, res.test_split.n)[:n]
    agree = sum(a == bool(b) for a, b in zip(acc["correct"], recorded, strict=True)) / n
    assert agree >= 0.99, f"the published teacher agrees with results/teacher on {agree:.1%} of samples"
