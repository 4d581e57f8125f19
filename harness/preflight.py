"""Checks that read files or build models, run once the schemas have passed and before any work: a MAAD
folder's every line and image, a teacher checkpoint's folder, a public checkpoint's config, a compression
schedule against a checkpoint's real widths (a weightless model on the meta device).

Why apart from the schemas: a validator sees values and never touches the disk or torch
(harness/config/experiment.py, harness/config/profile.py), so a spec can be read anywhere, and everything that
needs more lives here, above the modules it reads with, called by the commands (harness/commands/,
run_all.py). Problems are reported as a schema's are: the file, then one line per field and what is allowed.
"""

from __future__ import annotations

from pathlib import Path

from harness.config.compression import Compression
from harness.config.experiment import Experiment
from harness.config.files import problems_error
from harness.config.loading import DEFAULT_PROFILE, placed_profile, resolve, spec_path
from harness.config.paths import EXPERIMENTS_DIR, PROFILES_DIR
from harness.config.profile import Profile
from harness.data.loaders import MaadFormatError, check_maad_folder
from harness.errors import CheckpointError
from harness.models.public import heads_need_not_divide_hidden, meta_model, read_config
from harness.prune.step import schedule_problems
from harness.prune.structures import default_stages


def checked_profile(
    profile: str | Path,
    overrides: dict | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> Profile:
    """harness/config/loading.py `placed_profile`, then the profile's files: a SpecError naming the profile
    file and each field whose folder is missing or unusable."""
    prof = placed_profile(profile, overrides or {}, device, dtype)
    _raise(spec_path(profile, PROFILES_DIR), "invalid profile", profile_problems(prof))
    return prof


def checked(
    experiment: str | Path,
    profile: str | Path = DEFAULT_PROFILE,
    num_seeds: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[Experiment, Profile]:
    """harness/config/loading.py `resolve`, then the files the experiment and its profile name."""
    exp, prof = resolve(experiment, profile, num_seeds, device, dtype)
    _raise(spec_path(profile, PROFILES_DIR), "invalid profile", profile_problems(prof))
    path = spec_path(experiment, EXPERIMENTS_DIR)
    for i, m in enumerate(exp.models):
        problems = model_problems(m, prof.compression)
        if problems and all(p.startswith("compression.") for p in problems):
            _raise(path, f"compression impossible on {m.checkpoint}", [f"models.{i}.{p}" for p in problems])
        _raise(path, "invalid experiment", [f"models.{i}.{p}" for p in problems])
    return exp, prof


def profile_problems(prof: Profile) -> list[str]:
    """'field: why' for a MAAD folder that is missing or broken (every line and image read) and a teacher
    checkpoint folder without config.json."""
    problems = []
    data = prof.data
    if data.source == "maad_folder":
        if data.path is None or not Path(data.path).is_dir():
            problems.append(f"data.path: source 'maad_folder' needs an existing folder, got {data.path!r}")
        else:
            try:
                check_maad_folder(Path(data.path))
            except MaadFormatError as e:
                problems.append(f"data.path: {e}")
    checkpoint = prof.teacher.checkpoint
    if checkpoint is not None and not (Path(checkpoint) / "config.json").is_file():
        problems.append(f"teacher.checkpoint: {checkpoint} has no config.json (not a save_pretrained folder)")
    return problems


def model_problems(entry, compression: Compression) -> list[str]:
    """'field: why' for a public_lmms entry: a folder that is not a supported checkpoint, and (with
    `compress`) a schedule its language model cannot take."""
    if entry.checkpoint in ("teacher", "compressed") or entry.allow_download:
        return []
    if not (Path(entry.checkpoint) / "config.json").is_file():
        return [
            f"checkpoint: {entry.checkpoint} is not a save_pretrained folder (no config.json); use a local "
            "folder, 'teacher', 'compressed', or a hub id with allow_download: true"
        ]
    try:
        with heads_need_not_divide_hidden():
            read_config(entry.checkpoint)  # a supported BLIP-2 family, or why not
    except CheckpointError as e:
        return [f"checkpoint: {e}"]
    if not entry.compress:
        return []
    changed = Compression.model_validate({**compression.model_dump(), **entry.compression})
    return [f"compression.{p}" for p in compression_problems(entry.checkpoint, changed, entry.stages)]


def compression_problems(path: str | Path, compression: Compression, stages: list[str] | None) -> list[str]:
    """What makes a compression section impossible on the checkpoint in `path`, read from its config alone
    (a weightless model on the meta device): each stage's step and maximum against the real widths, and
    stages its language model cannot express. `stages` None: every stage the model supports."""
    with heads_need_not_divide_hidden():
        model = meta_model(read_config(path))
    return schedule_problems(model, compression, stages or default_stages(model))


def _raise(where: Path, title: str, problems: list[str]) -> None:
    if problems:
        raise problems_error(where, title, problems)
