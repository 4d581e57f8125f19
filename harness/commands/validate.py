"""`python -m harness validate`: every experiment and profile file checked as a run would check it, run
nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.config.experiment import Experiment
from harness.config.files import SpecError, read_yaml
from harness.config.loading import experiment_files, load_experiment, replicate_problems
from harness.config.paths import PROFILES_DIR
from harness.preflight import checked, checked_profile


def _is_profile(path: Path) -> bool:
    """Profiles live in experiments/profiles/. Elsewhere, a file is taken for a profile only when it has a
    profile's sections (model, data, teacher, compression) and none of an experiment's; so an experiment
    that lacks `kind` is reported as an experiment missing `kind`, not as a profile with nine errors."""
    if path.parent.resolve() == PROFILES_DIR.resolve():
        return True
    try:
        raw = read_yaml(path)
    except (OSError, SpecError):
        return False
    if not isinstance(raw, dict):
        return False
    experiment_keys = set(Experiment.model_fields) - {"name", "description"}  # a profile has those too
    return not (experiment_keys & set(raw)) and bool({"model", "data", "teacher", "compression"} & set(raw))


def cmd_validate(args) -> int:
    files = [Path(f) for f in args.files] or experiment_files()
    profiles = [args.profile] if args.profile else sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    failures = 0
    for prof in profiles:
        try:
            checked_profile(prof)
        except SpecError as e:
            print(e, file=sys.stderr)
            failures += 1
            continue
        for f in files:
            try:
                if _is_profile(f):
                    checked_profile(f)
                else:
                    checked(f, prof)
                print(f"ok  {f} (profile {prof})")
            except SpecError as e:
                print(e, file=sys.stderr)
                failures += 1
    for problem in replicate_problems([load_experiment(f) for f in experiment_files()]):
        print(problem, file=sys.stderr)
        failures += 1
    return 1 if failures else 0
