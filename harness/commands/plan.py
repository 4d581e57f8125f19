"""`python -m harness plan`: the memory plan of harness/plan.py for a checkpoint and a profile, printed."""

from __future__ import annotations

from harness.config.loading import placed_profile
from harness.errors import CheckpointError
from harness.plan import plan, render


def plan_command(args) -> int:
    """`python -m harness plan`: print the plan; exit status 1 when it does not fit --memory."""
    if args.checkpoint is not None and not (args.checkpoint / "config.json").is_file():
        raise CheckpointError(f"{args.checkpoint}: no config.json (plan reads a checkpoint's config only)")
    prof = placed_profile(args.profile, {}, dtype=args.dtype)
    result = plan(prof, args.checkpoint, args.text_tokens, args.answer_tokens, args.gpus, args.parallel)
    print(render(result, prof, args.memory, args.tflops))
    return 0 if args.memory is None or result.fits(args.memory) else 1
