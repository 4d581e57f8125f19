"""Reading experiment and profile files into one validated spec: includes, overrides, --num-seeds,
--device and --dtype laid over the profile, and every error naming the file and the field before any work.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from harness.config.compression import Compression, whole_step_problems
from harness.config.experiment import Experiment
from harness.config.files import SpecError, format_errors, merge, problems_error, read_mapping
from harness.config.paths import EXPERIMENTS_DIR, PROFILES_DIR
from harness.config.profile import Profile
from harness.errors import DeviceError

DEFAULT_PROFILE = "cpu"


def load_profile(
    name_or_path: str | Path, overrides: dict | None = None, source: Path | None = None
) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
            raise SpecError(f"unknown profile '{name_or_path}'; allowed: {', '.join(known)}")
    raw = merge(read_mapping(path), overrides or {})
    try:
        return Profile.model_validate(raw)
    except ValidationError as e:
        where = path if not overrides else Path(f"{path} + overrides" + (f" from {source}" if source else ""))
        raise SpecError(format_errors(e, Profile, where)) from None


def _with_includes(raw: dict, path: Path, seen: tuple[Path, ...]) -> dict:
    """`raw` with the runs and paper rows of the experiments it includes put before its own (each included
    file is validated on its own first, so an error there names that file)."""
    names, own_runs, own_paper = raw.get("include"), raw.get("runs", []), raw.get("paper", [])
    if not names or not all(isinstance(x, list) for x in (names, own_runs, own_paper)):
        return raw  # validation says what is wrong with them
    runs, paper = [], []
    for name in names:
        target = path.parent / f"{name}.yaml"
        if not target.is_file():
            raise SpecError(f"{path}: field 'include': no experiment '{name}' ({target}: file not found)")
        if target.resolve() in seen:
            raise SpecError(f"{path}: field 'include': '{name}' includes {path.stem} back (a cycle)")
        inc = load_experiment(target, seen)
        if inc.kind != raw.get("kind"):
            raise SpecError(
                f"{path}: field 'include': '{name}' is of kind '{inc.kind}', not '{raw.get('kind')}'"
            )
        runs += [r.model_dump(mode="json", exclude_unset=True) for r in inc.runs]
        paper += [r.model_dump(mode="json", exclude_unset=True) for r in inc.paper]
    return {**raw, "runs": runs + own_runs, "paper": paper + own_paper}


def load_experiment(path: str | Path, _seen: tuple[Path, ...] = ()) -> Experiment:
    """An experiment file, validated, with the runs and paper rows of the experiments it includes."""
    path = Path(path)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{path}.yaml"
    raw = _with_includes(read_mapping(path), path, (*_seen, path.resolve()))
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_errors(e, Experiment, path)) from None
    if exp.name != path.stem:
        raise SpecError(f"{path}: field 'name': must equal the file name '{path.stem}', got '{exp.name}'")
    return exp


def spec_path(name_or_path: str | Path, folder: Path) -> Path:
    """The file an experiment or profile name stands for (a path as given; a bare name in `folder`)."""
    return Path(name_or_path) if Path(name_or_path).suffix else folder / f"{name_or_path}.yaml"


def placed_profile(
    profile: str | Path,
    overrides: dict,
    device: str | None = None,
    dtype: str | None = None,
    source: Path | None = None,
) -> Profile:
    """`load_profile` with `device` and `dtype` (--device, --dtype) laid over `overrides`, and a device this
    machine lacks refused here, naming the profile file and the field, before any work."""
    given = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    prof = load_profile(profile, {**overrides, **given}, source=source)
    try:
        prof.placement_key()  # torch only off the CPU's float32 default
    except DeviceError as e:
        where = spec_path(profile, PROFILES_DIR)
        field, why = str(e).split(": ", 1)
        raise SpecError(
            f"{where}{' (from --device/--dtype)' if given else ''}: field '{field}': {why}"
        ) from None
    return prof


def resolve(
    experiment: str | Path,
    profile: str | Path = DEFAULT_PROFILE,
    num_seeds: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[Experiment, Profile]:
    """Validate an experiment and its profile (with the experiment's overrides applied) together.
    `num_seeds` replaces the profile's seeds by 0 .. num_seeds-1; `device` and `dtype` (--device, --dtype)
    replace the profile's, and a device this machine lacks is refused here, before any work."""
    exp = load_experiment(experiment)
    path = spec_path(experiment, EXPERIMENTS_DIR)
    overrides = dict(exp.overrides)
    if num_seeds is not None:
        overrides["seeds"] = list(range(num_seeds))
    prof = placed_profile(profile, overrides, device, dtype, source=path)
    for i, m in enumerate(exp.models):  # per-model compression changes, checked against the schema now
        try:
            c = Compression.model_validate({**prof.compression.model_dump(), **m.compression})
        except ValidationError as e:
            msg = format_errors(e, Compression, path).replace("field '", f"field 'models.{i}.compression.")
            raise SpecError(msg) from None
        if bad := whole_step_problems(c):
            raise problems_error(path, "invalid compression", [f"models.{i}.{b}" for b in bad])
    return exp, prof


def replicate_problems(experiments: list[Experiment]) -> list[str]:
    """Each `replicates` entry that names no claim of these experiments, as 'NAME: field replicates.I: ...'
    (a check across files, so it runs where all of them are loaded: validate and the claims report)."""
    known = {c.id for e in experiments for c in e.claims}
    return [
        f"{EXPERIMENTS_DIR / e.name}.yaml: field 'replicates.{i}': '{cid}' names no claim of any experiment"
        for e in experiments
        for i, cid in enumerate(e.replicates)
        if cid not in known
    ]


def experiment_files() -> list[Path]:
    return sorted(EXPERIMENTS_DIR.glob("*.yaml"))
