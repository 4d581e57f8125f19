"""The run store: every cached artefact (dataset, teacher, compression run, evaluation, teacher outputs)
and the key it lives under.

Why one module: a key built from what determines an entry is what makes "train once, reuse everywhere" safe,
so keys are built here and nowhere else. Recipes ask the store for a folder, a model or a cached evaluation;
they never build a key or a path. RQ1–RQ6 and the baselines share the dataset, the teacher and the full
multi-stage run through it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import datasets

from harness import parallel, sample_log
from harness.cache import (
    CorruptEntry,
    atomic_dir,
    content_hash,
    files_hash,
    read_sealed_json,
    usable,
    verify_manifest,
    write_atomic,
    write_json,
    write_manifest,
    write_sealed_json,
)
from harness.config.compression import STEP_FIELDS
from harness.config.experiment import CompressionRun, PublicModel, RunPlan
from harness.config.paths import ROOT
from harness.config.profile import Profile
from harness.data.loaders import load_maad_folder, load_synth_ads, maad_files, synth_ads_key
from harness.models.public import load_lmm, load_model, save_lmm
from harness.results import Result

_REBUILD: set[str] | None = None  # with --rebuild: the entries rebuilt so far in this process


def rebuild_entries() -> None:
    """From now on, every teacher and compression run this process uses is rebuilt once (--rebuild)."""
    global _REBUILD
    _REBUILD = set()


def _rebuilding(path: Path) -> bool:
    """Whether the entry at `path` is to be rebuilt now: the first time this process meets it under
    --rebuild. It is then removed."""
    key = str(Path(path).resolve())
    if _REBUILD is None or key in _REBUILD:
        return False
    _REBUILD.add(key)
    if Path(path).exists() and parallel.is_main():  # every process treats it as absent; one removes it
        print(f"--rebuild: recomputing {path}", file=sys.stderr, flush=True)
        shutil.rmtree(path) if Path(path).is_dir() else Path(path).unlink()
    return True


# The meaning of the keys below, part of every key: entries of different meaning never share a folder.
KEY_VERSION = 4


def _versioned(key: dict) -> dict:
    return {**key, "key_version": KEY_VERSION}


def checkpoint_hash(folder: Path) -> str:
    """The content of a save_pretrained folder: its own files (weights, config, processor), not the eval/
    cache the harness writes there. A user's checkpoint has no manifest, so this hashes the files."""
    folder = Path(folder)
    return files_hash(folder, [f for f in folder.iterdir() if f.is_file()])


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
    another; and a device or dtype other than the CPU in float32 (`Profile.placement_key`)."""
    t = profile.teacher.model_dump(mode="json", exclude={"checkpoint"})
    key = {"dataset": dataset_key(profile), "model": profile.model.model_dump(mode="json"), "teacher": t}
    if profile.teacher.checkpoint is not None:
        key["checkpoint"] = checkpoint_hash(profile.teacher.checkpoint)
    if (placement := profile.placement_key()) is not None:  # every run of it inherits the placement
        key["placement"] = placement
    return _versioned(key)


def input_hashes(profile: Profile) -> dict[str, str]:
    """The content hashes of the dataset and the teacher an experiment starts from (part of its spec hash)."""
    return {"dataset": content_hash(dataset_key(profile)), "teacher": content_hash(teacher_key(profile))}


def teacher_dir(profile: Profile, cache_dir: Path) -> Path:
    if profile.teacher.checkpoint is not None:
        return Path(profile.teacher.checkpoint)
    return Path(cache_dir) / "teachers" / f"teacher-{content_hash(teacher_key(profile))}"


def publish_teacher(target: Path) -> Path:
    """Copy the store's teacher `target` into the repository (PUBLISHED), whole and checked, without the
    evaluations cached beside it."""
    verify_manifest(target)
    dest = PUBLISHED / Path(target).name
    with atomic_dir(dest) as tmp:
        shutil.copytree(target, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("eval", ".*"))
    verify_manifest(dest)
    return dest


def save_teacher(target: Path, model, processor, log: dict) -> None:
    """The trained teacher, its processor and its training log, with their manifest, all or nothing."""
    with atomic_dir(target) as tmp:
        save_lmm(model, processor, tmp)
        write_json(tmp / "train_log.json", log)
        write_manifest(tmp)


# teachers shipped with the repository, by store name: every clone compresses the one teacher that results/
# came from, whatever its CPU would train (`python -m harness publish` puts one here)
PUBLISHED = ROOT / "published" / "teachers"


def published_teacher(target: Path) -> Path | None:
    """The repository's copy of the store's teacher `target` (the same name: the same teacher key), if there
    is one and every file matches its manifest; a copy that does not is reported and not used."""
    folder = PUBLISHED / Path(target).name
    if not (folder / "config.json").is_file():
        return None
    try:
        verify_manifest(folder)
    except CorruptEntry as e:
        print(f"published teacher not used: {e}", file=sys.stderr, flush=True)
        return None
    return folder


def load_teacher(target: Path, stored: bool = True):
    """(model, processor, training log) of a saved teacher, or None if there is none yet. A teacher of the
    store (`stored`; a profile's own checkpoint is the user's) whose files do not match its manifest is
    reported, removed and reported as absent, so that it is retrained. A store without it takes the
    published copy of the same teacher key, unless --rebuild asks for it to be trained."""
    if stored and _rebuilding(target):
        return None
    if stored and (target / "config.json").is_file() and not usable(target, verify_manifest):
        pass  # reported and removed: the published copy, if any, replaces it below, else training does
    folder = target
    if stored and not (target / "config.json").is_file() and (src := published_teacher(target)) is not None:
        with atomic_dir(target) as tmp:  # (the main process's copy, under accelerate launch)
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        print(f"teacher: the published one, {src}", file=sys.stderr, flush=True)
        folder = src  # every process reads the checked original
    if not (folder / "config.json").is_file():
        return None
    # a profile's teacher answers the stand-in's prompts, whoever wrote its folder
    model, processor = load_lmm(folder, prompt="stand-in")
    log_path = folder / "train_log.json"
    return model, processor, json.loads(log_path.read_text()) if log_path.is_file() else {}


def run_key(run: CompressionRun) -> dict:
    """What determines a run variant's outcome (CompressionRun.determining)."""
    return run.determining()


def compression_key(profile: Profile, run: CompressionRun, seed: int) -> dict:
    """What determines a compression run of the profile's teacher: the teacher, the compression section, the
    run variant (`run_key`), the seed and the batch size of its cached evaluations. A run whose own E is the
    profile's is the same run as one that names none (the budget map shares RQ1's run)."""
    if run.epochs == profile.compression.epochs:
        run = run.model_copy(update={"epochs": None})
    return _versioned(
        {
            "teacher": teacher_key(profile),
            "compression": profile.compression.model_dump(mode="json"),
            "run": run_key(run),
            "seed": seed,
            "eval_batch_size": profile.evaluation_batch_size,
            **_processes(),
        }
    )


def _processes() -> dict:
    """The number of data-parallel processes (harness/parallel.py), in the key of what they compute
    together when there are several: their sums differ from one process's in the order of additions."""
    return {"processes": parallel.world()} if parallel.world() > 1 else {}


def run_dir(profile: Profile, run: CompressionRun, seed: int, cache_dir: Path) -> Path:
    return Path(cache_dir) / "compression" / f"run-{content_hash(compression_key(profile, run, seed))}"


def curve_path(profile: Profile, level: str, criterion: str, seed: int, cache_dir: Path) -> Path:
    """A pruning curve of the profile's teacher (harness/recipes/pruning_curves.py): keyed by the teacher,
    the level's step and maximum, the criterion, D_p's size and batch, the evaluation batch and, for the
    random criterion only, the seed: every other criterion is a function of the teacher and D_p (importance
    is taken in eval mode), so its curve is the same for every seed and computed once."""
    c = profile.compression
    step_field, max_field = STEP_FIELDS[level]
    key = {
        "teacher": teacher_key(profile),
        "level": level,
        "criterion": criterion,
        "step": getattr(c, step_field),
        "maximum": getattr(c, max_field),
        "d_p": [c.pruning_samples, c.batch_size],
        "seed": seed if criterion == "random" else None,
        "eval_batch_size": profile.evaluation_batch_size,
        **_processes(),
    }
    return Path(cache_dir) / "curves" / f"curve-{content_hash(_versioned(key))}.json"


def cached_curve(path: Path) -> dict | None:
    """A pruning curve computed before (sealed), or None (also under --rebuild); a corrupt one is reported
    and removed."""
    if _rebuilding(path):
        return None
    return read_sealed_json(path) if path.is_file() and usable(path, read_sealed_json) else None


def checkpoint_key(checkpoint: str) -> dict:
    """A public checkpoint: its name, and for a folder the content of its files (weights, config,
    processor)."""
    folder = Path(checkpoint)
    if not folder.is_dir():  # a hub id (allow_download)
        return {"checkpoint": str(checkpoint)}
    return {"checkpoint": str(checkpoint), "files": checkpoint_hash(folder)}


def public_run_dir(
    model_key: dict, entry: PublicModel, plan: RunPlan, profile: Profile, cache_dir: Path
) -> Path:
    """A compression run of a public checkpoint (harness/recipes/public_lmms.py), keyed by the model, the
    dataset it is fine-tuned and compressed on, its fine-tune, the run, the compression section with the
    entry's changes, the maxima, the seed and a placement other than the CPU's float32."""
    key = {
        "model": model_key,
        "dataset": dataset_key(profile),
        "fine_tune": entry.fine_tune_epochs,
        "lr": entry.fine_tune_lr,
        "run": run_key(plan.run),
        "compression": plan.compression.model_dump(),
        "maxima": plan.maxima,
        "seed": plan.seed,
        "eval_batch_size": plan.eval_batch_size,
        **_processes(),
    }
    if (placement := profile.placement_key()) is not None:
        key["placement"] = placement
    return Path(cache_dir) / "compression" / f"public-{content_hash(_versioned(key))}"


def _step_dir(out: Path, step: int) -> Path:
    return Path(out) / "steps" / f"step_{step:03d}"


def save_step(out: Path, step: int, model, processor=None, card: str | None = None) -> None:
    """The model after a completed step of a run folder (with its processor and model card, when given),
    with its manifest, written whole or not at all."""
    with atomic_dir(_step_dir(out, step)) as tmp:
        save_lmm(model, processor, tmp)
        if card is not None:
            write_atomic(tmp / "README.md", card)
        write_manifest(tmp)


def save_state(out: Path, state: dict) -> None:
    write_sealed_json(Path(out) / "state.json", state)


def check_run(out: Path) -> None:
    """A run folder is whole when its state is sealed, counts one trace row per step, and the model of every
    step it reached is there and matches its manifest."""
    state = read_sealed_json(out / "state.json")
    if state is None:
        raise CorruptEntry(f"{out}: no state.json")
    if not isinstance(state.get("step"), int) or not isinstance(state.get("trace"), list):
        raise CorruptEntry(f"{out}/state.json: no step or trace")
    if state["step"] != len(state["trace"]):
        raise CorruptEntry(f"{out}/state.json: step {state['step']} with {len(state['trace'])} trace rows")
    for k in range(state["step"] + 1):  # step 0 (the teacher's copy) is kept by Algorithm 1's runs only
        if (k > 0 or state["step"] == 0) and not _step_dir(out, k).is_dir():
            raise CorruptEntry(f"{_step_dir(out, k)}: missing (state.json is at step {state['step']})")
        if _step_dir(out, k).is_dir():
            verify_manifest(_step_dir(out, k))


def run_state(out: Path) -> dict | None:
    """The state of a run folder (its last completed step), or None when it has none: never run, or found
    corrupt, reported and removed (it is then recomputed from the start)."""
    out = Path(out)
    if _rebuilding(out):  # every process treats it as absent, whether or not it is removed yet
        return None
    if not (out / "state.json").is_file() or not usable(out, check_run):
        return None
    return read_sealed_json(out / "state.json")


def step_model(out: Path, step: int | None = None, device: str | None = None):
    """The model saved after `step` (default: the last completed step) of a run folder, checked against its
    manifest (CorruptEntry if it does not match); on `device` (default: the current placement's)."""
    if step is None:
        step = read_sealed_json(Path(out) / "state.json")["step"]
    verify_manifest(_step_dir(out, step))
    return load_model(_step_dir(out, step), device=device)


def cached_evaluation(path: Path, model_hash: str) -> dict | None:
    """A cached evaluation's accuracy, if its record is sealed, its sample log intact, and it was made of
    the model with this hash."""
    if not path.is_file() or not usable(path, read_evaluation):
        return None
    record = read_sealed_json(path)
    return record["accuracy"] if record.get("model") == model_hash else None


def write_evaluation(path: Path, model_hash: str, accuracy: dict, samples: list[dict]) -> None:
    """An evaluation's record, sealed, with its sample log beside it (the record keeps the log's hash)."""
    data = sample_log.dump(samples)
    write_atomic(samples_log(path), data)  # (the main process's, under accelerate launch)
    record = {"model": model_hash, "accuracy": accuracy, "samples_sha256": hashlib.sha256(data).hexdigest()}
    write_sealed_json(path, record)


def step_evaluation(out: Path, step: int) -> tuple[Path, str]:
    """Where the test evaluation of a run's model after `step` is cached, and that model's manifest hash
    (a model that changed is evaluated again)."""
    return _step_eval_path(out, step), verify_manifest(_step_dir(out, step))


def _step_eval_path(out: Path, step: int) -> Path:
    return Path(out) / "eval" / f"test_step_{step:03d}.json"


def teacher_evaluation(profile: Profile, tdir: Path) -> tuple[Path, str]:
    """Where the teacher's test evaluation is cached, and what it is tied to: the content of the teacher's
    files, the dataset (a user's checkpoint serves several datasets) and a placement other than the CPU's
    float32 (`Profile.placement_key`)."""
    placement = profile.placement_key()
    determining = [checkpoint_hash(tdir), dataset_key(profile), *([placement] if placement else [])]
    return teacher_eval_path(profile, tdir), content_hash(determining)


def teacher_eval_path(profile: Profile, tdir: Path) -> Path:
    """Where the teacher's cached test evaluation lives (beside the teacher, per batch size and placement)."""
    placement = profile.placement_key()
    where = "" if placement is None else f"_{placement['device']}_{placement['dtype']}"
    return Path(tdir) / "eval" / f"test_bs{profile.evaluation_batch_size}{where}.json"


def result_sample_logs(result: Result, profile: Profile, tdir: Path, own_teacher: bool) -> dict[str, Path]:
    """The per-sample logs a result folder keeps, by name: the teacher's (`own_teacher`: the teacher
    experiment, and experiments that train a teacher of their own) and the final model of each run's first
    seed. Bounded: one log per run, about 40 kB each at 2,500 test samples; every other model's log stays in
    the cache beside its evaluation."""
    logs = {"teacher": samples_log(teacher_eval_path(profile, tdir))} if own_teacher else {}
    runs = result.runs  # a compression result's runs (other kinds keep input hashes there)
    for run in runs if isinstance(runs, list) else []:
        first = min(run.seeds, key=lambda s: s.seed) if run.seeds else None
        if first is not None and first.trace:
            step = first.trace[-1].step
            logs[f"{run.label}_seed{first.seed}"] = samples_log(_step_eval_path(first.run_dir, step))
    return {name: path for name, path in logs.items() if path.is_file()}


def samples_log(eval_record: Path) -> Path:
    """The per-sample log (harness/sample_log.py) written beside a cached evaluation."""
    return Path(eval_record).with_name(Path(eval_record).stem + ".samples.jsonl.gz")


_TEACHER_OUTPUTS: dict[tuple, list] = {}


def teacher_outputs(key: tuple, build) -> list:
    """Batches with the teacher's outputs (D_d or D_p), built once per process by `build()` for `key` (the
    hash of the teacher's key, which covers the dataset, then what selects and batches the samples): every
    experiment of a run_all and every run of an experiment that uses the same share reuses them. Bounded:
    the outputs of one teacher at a time (`key[0]`), since a run_all's experiments run teacher by teacher and
    a real model's outputs over D_d are gigabytes."""
    if key not in _TEACHER_OUTPUTS:
        for other in [k for k in _TEACHER_OUTPUTS if k[0] != key[0]]:
            del _TEACHER_OUTPUTS[other]
        _TEACHER_OUTPUTS[key] = build()
    return _TEACHER_OUTPUTS[key]


def verify(cache_dir: Path) -> tuple[int, list[str]]:
    """Check every entry of the store in full (every file's sha256, every seal) without changing anything:
    (entries checked, problems found)."""
    cache_dir, problems, checked = Path(cache_dir), [], 0

    def check(path: Path, fn) -> None:
        nonlocal checked
        checked += 1
        try:
            fn(path)
        except CorruptEntry as e:
            problems.append(str(e))

    for d in sorted((cache_dir / "datasets").glob("[!.]*")):
        check(d, verify_manifest)
    for d in sorted((cache_dir / "teachers").glob("[!.]*")):
        check(d, verify_manifest)
        for e in sorted((d / "eval").glob("*.json")):
            check(e, read_evaluation)
    for d in sorted((cache_dir / "compression").glob("[!.]*")):
        if (d / "state.json").is_file():  # a folder without one was interrupted before its first step
            check(d, check_run)
            for e in sorted((d / "eval").glob("*.json")):
                check(e, read_evaluation)
    return checked, problems


def read_evaluation(path: Path) -> dict | None:
    """A cached evaluation's sealed record, its sample log checked against the hash the record keeps
    (CorruptEntry naming the log if it is missing or altered)."""
    record = read_sealed_json(path)
    if record is not None and "samples_sha256" in record:
        log = samples_log(path)
        if not log.is_file() or hashlib.sha256(log.read_bytes()).hexdigest() != record["samples_sha256"]:
            raise CorruptEntry(f"{log}: the sample log is missing or does not match its evaluation's record")
    return record
