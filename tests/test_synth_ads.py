"""SynthAd: determinism, schema, difficulty knobs, and the MAAD-format loader's errors."""

import hashlib
import json

import pytest
from PIL import Image

from harness.config.profile import SynthAdParams
from harness.config.vocabulary import TASKS
from harness.data.loaders import MaadFormatError, check_maad_folder, load_maad_folder, load_synth_ads
from harness.data.synth_ads import LABELS, generate_sample

SIZES = {"train": 40, "validation": 10, "test": 10}


def _digest(dd) -> str:
    h = hashlib.sha256()
    for split in sorted(dd):
        for row in dd[split].cast_column("image", dd[split].features["image"].__class__(decode=False)):
            h.update(row["image"]["bytes"])
            h.update(json.dumps({k: v for k, v in row.items() if k != "image"}, sort_keys=True).encode())
    return h.hexdigest()


def test_same_seed_gives_identical_bytes(tmp_path):
    a = load_synth_ads(SynthAdParams(), SIZES, seed=3, cache_dir=tmp_path / "a", progress=False)
    b = load_synth_ads(SynthAdParams(), SIZES, seed=3, cache_dir=tmp_path / "b", progress=False)
    c = load_synth_ads(SynthAdParams(), SIZES, seed=4, cache_dir=tmp_path / "c", progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_cache_is_keyed_by_parameters(tmp_path):
    load_synth_ads(SynthAdParams(), SIZES, seed=0, cache_dir=tmp_path, progress=False)
    load_synth_ads(SynthAdParams(noise_std=0.0), SIZES, seed=0, cache_dir=tmp_path, progress=False)
    load_synth_ads(SynthAdParams(), SIZES, seed=0, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "datasets").glob("synth_ads-*"))) == 2


def test_schema_and_tasks(tmp_path):
    dd = load_synth_ads(SynthAdParams(), SIZES, seed=0, cache_dir=tmp_path, progress=False)
    assert set(dd) == set(SIZES)
    train = dd["train"]
    assert {"image", "task", "question", "answer"} <= set(train.column_names)
    assert isinstance(train[0]["image"], Image.Image) and train[0]["image"].size == (64, 64)
    assert set(train["task"]) == set(TASKS)
    for row in train.select_columns(["task", "question", "answer", "title"]):
        assert row["answer"] in LABELS[row["task"]]
        if row["task"] == "content":
            assert row["title"] in row["question"]


def test_label_noise_share_matches_the_knob():
    p = SynthAdParams(label_noise=0.2)
    rows = [generate_sample(0, 0, i, p) for i in range(1500)]
    share = sum(r["label_noise"] for r in rows) / len(rows)
    assert 0.16 < share < 0.24
    clean = SynthAdParams(label_noise=0.0)
    assert all(
        r["answer"] == r["clean_answer"] for r in (generate_sample(0, 0, i, clean) for i in range(200))
    )


def test_image_size_knob():
    row = generate_sample(0, 0, 0, SynthAdParams(image_size=32))
    import io

    assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (32, 32)


def _line(task="color", image="a.png", **extra):
    return json.dumps({"image": image, "task": task, "question": "q?", "answer": "red", **extra})


ALL_TASKS = [_line(t) for t in ("color", "manifestation", "content", "logo", "style")]


def _maad_folder(tmp_path, train_lines, splits=("train", "validation", "test")):
    """A MAAD-format folder: every split covers the five tasks; `train_lines` come first in train.jsonl."""
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    for split in splits:
        lines = (train_lines if split == "train" else []) + ALL_TASKS
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_maad_folder_loads(tmp_path):
    dd = load_maad_folder(_maad_folder(tmp_path, [_line(), _line()]))
    assert dd["train"].num_rows == 7 and dd["train"][0]["answer"] == "red"
    assert check_maad_folder(tmp_path)["train"] == {
        "color": 3,
        "manifestation": 1,
        "content": 1,
        "logo": 1,
        "style": 1,
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        (
            json.dumps({"image": "a.png", "task": "color", "question": "q"}),
            "missing or non-string field(s) ['answer']",
        ),
        (_line(image="missing.png"), "does not exist"),
        (json.dumps(["a list"]), "expected a JSON object"),
        (_line(task="colour"), "unknown task 'colour'; allowed: color, manifestation"),
        (_line(image="broken.png"), "broken.png cannot be read"),
    ],
)
def test_maad_bad_line_names_file_and_line(tmp_path, bad, message):
    folder = _maad_folder(tmp_path, [_line(), bad])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(MaadFormatError) as e:
        load_maad_folder(folder)
    assert f"{folder / 'train.jsonl'}:2:" in str(e.value)
    assert message in str(e.value)


def test_maad_split_missing_a_task_reports_its_coverage(tmp_path):
    folder = _maad_folder(tmp_path, [])
    (folder / "test.jsonl").write_text("\n".join(ALL_TASKS[:3]) + "\n")
    with pytest.raises(
        MaadFormatError, match=r"test.jsonl: no sample of task\(s\) logo, style \(coverage: color 1"
    ):
        check_maad_folder(folder)


def test_maad_missing_split_is_named(tmp_path):
    folder = _maad_folder(tmp_path, [], splits=("validation", "test"))
    with pytest.raises(MaadFormatError, match="missing train.jsonl"):
        check_maad_folder(folder)


def test_maad_problems_fail_profile_validation_naming_the_field(tmp_path):
    """Found when the profile is checked (harness/preflight.py), before any work: not an IndexError or
    KeyError in teacher training."""
    from harness.config.files import SpecError
    from harness.preflight import checked_profile

    folder = _maad_folder(
        tmp_path / "maad" if (tmp_path / "maad").mkdir() is None else None, [_line("colour")]
    )
    with pytest.raises(SpecError, match=r"field 'data.path': .*train.jsonl:1: unknown task 'colour'"):
        over = {"data": {"source": "maad_folder", "path": str(folder)}, "teacher": {"pretraining": None}}
        checked_profile("smoke", over)
