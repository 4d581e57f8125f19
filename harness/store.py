"""Shared runs, computed once and reused: the dataset and the trained teacher, keyed by their inputs.

Why here and not in each experiment: RQ1–RQ6 and the baselines all start from the same data and the same
teacher; keying them by the hash of the resolved inputs makes "train once, reuse everywhere" automatic
and makes a change of any input produce a new run instead of silently reusing a stale one.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from harness.cache import atomic_dir, content_hash, files_hash, write_json
from harness.data.loaders import load_maad_folder, load_synth_ads, maad_files, synth_ads_key
from harness.models.public import load_lmm
from harness.models.stand_in import new_model
from harness.profile import Profile
from harness.recipes.teacher import train_teacher


def dataset_key(profile: Profile) -> dict:
    """A MAAD folder is keyed by the content of its split files and of every image they name (not its path:
    rewritten answers must not reuse a teacher trained on the old ones); SynthAd by its generator inputs."""
    d = profile.data
    if d.source == "maad_folder":
        return {"source": "maad_folder", "content": files_hash(Path(d.path), maad_files(Path(d.path)))}
    return synth_ads_key(d.synth_ads, d.sizes.model_dump(), d.seed)


def get_dataset(profile: Profile, cache_dir: Path, progress: bool = True) -> datasets.DatasetDict:
    d = profile.data
    if d.source == "maad_folder":
        return load_maad_folder(d.path)
    return load_synth_ads(d.synth_ads, d.sizes.model_dump(), d.seed, cache_dir, progress)


def teacher_key(profile: Profile) -> dict:
    """What determines the teacher: the data, the model and the recipe; for a given checkpoint, the content of
    its files (weights, config, processor), so that runs compressed from one checkpoint are never reused for
    another."""
    t = profile.teacher.model_dump(mode="json", exclude={"checkpoint"})
    key = {"dataset": dataset_key(profile), "model": profile.model.model_dump(mode="json"), "teacher": t}
    if profile.teacher.checkpoint is not None:
        folder = Path(profile.teacher.checkpoint)
        # the folder's own files: weights, config, processor (not the eval/ cache the harness writes there)
        key["checkpoint"] = files_hash(folder, [f for f in folder.iterdir() if f.is_file()])
    return key


def teacher_dir(profile: Profile, cache_dir: Path) -> Path:
    if profile.teacher.checkpoint is not None:
        return Path(profile.teacher.checkpoint)
    return Path(cache_dir) / "teachers" / f"teacher-{content_hash(teacher_key(profile))}"


def get_teacher(profile: Profile, cache_dir: Path, data: datasets.DatasetDict, progress: bool = True):
    """The trained teacher and its processor, trained and saved on first use, loaded afterwards."""
    target = teacher_dir(profile, cache_dir)
    if not (target / "config.json").is_file():
        model, processor = new_model(profile, data)
        log = train_teacher(
            model, processor, data, profile.teacher.model_dump(), profile.teacher.seed, progress
        )
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            write_json(tmp / "train_log.json", {"key": teacher_key(profile), **log})
    model, processor = load_lmm(target)
    log_path = target / "train_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    return model, processor, target, log
