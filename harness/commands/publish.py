"""`python -m harness publish --profile PROFILE`: put the profile's trained teacher into the repository
(published/teachers/, harness/store.py PUBLISHED), so that every clone compresses that teacher instead of
training its own.

Why: teacher training is deterministic on one CPU but not across CPUs (docs/results.md), so without the
weights no other machine can compress the teacher every committed number comes from. Commit the folder it
writes; a store without the teacher then copies it (checked against its manifest), and `--rebuild` still
trains one.
"""

from __future__ import annotations

from harness.config.files import SpecError
from harness.preflight import checked_profile
from harness.store import publish_teacher, teacher_dir


def publish_command(args) -> int:
    prof = checked_profile(args.profile)
    if prof.teacher.checkpoint is not None:
        raise SpecError(
            f"teacher.checkpoint: {prof.teacher.checkpoint} is your own checkpoint; nothing to publish"
        )
    target = teacher_dir(prof, args.cache_dir)
    if not (target / "config.json").is_file():
        raise SpecError(
            f"--cache-dir: no trained teacher of profile '{prof.name}' in {args.cache_dir}; train it first "
            f"(python run_all.py --profile {prof.name} --only teacher)"
        )
    dest = publish_teacher(target)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) / 2**20
    print(f"published {target.name} ({size:.1f} MiB) to {dest}; commit it, and every clone compresses it")
    return 0
