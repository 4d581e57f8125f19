"""The premises of the stand-in (P1–P5, harness/config/claims.py `check`), measured: each holds or fails, and
a claim below a failing premise is untestable on this stand-in (harness/report/claims.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.config.claims import Claim
from harness.config.experiment import Experiment
from harness.config.vocabulary import TASKS
from harness.report.claim_tests import Found, accuracies
from harness.report.frame import mean_std, pick, value
from harness.report.paired import paired_test
from harness.report.passes import sample_passes
from harness.report.vectors import knowledge_mask, run_vectors, stats, teacher_vectors
from harness.results import CompressionResult


def premise(claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame) -> Found | None:
    """A condition of the stand-in (harness/config/claims.py `check`), measured: 'holds' or 'fails'."""
    teacher = pick(frame, role="teacher")
    run = next((r for r in res.runs if r.label == claim.run), None) if claim.run else None
    bound = claim.threshold
    if claim.check == "unseen_knowledge":
        acc = value(teacher, "knowledge_unseen")
        if acc is None:
            return None
        text = f"teacher {acc:.3f} on knowledge questions about advertisers D_d never names (needs ≥ {bound})"
        return Found(text, verdict=held(acc >= bound))
    if claim.check == "teacher_best":
        return _teacher_best(claim, res, teacher)
    if run is None:
        return None
    if claim.check == "redundancy":
        return _redundancy(claim, res, frame)
    if claim.check == "scratch_gap":
        mask = knowledge_mask(res)
        if mask.sum() < 2:
            return None
        mine = run_vectors(res, claim.run, mask)
        theirs = teacher_vectors(res, len(mine), mask)
        p = paired_test(theirs, mine)
        scratch = [float(v.mean()) for v in mine]
        return Found(
            f"knowledge questions: teacher {float(theirs[0].mean()):.3f}, {claim.run} {mean_std(scratch)} "
            f"(gap {stats(p)}; needs the whole interval ≥ {bound})",
            verdict=held(p.low >= bound),
        )
    total = res.teacher.training_sample_passes
    if not total or not run.seeds:
        return None
    counted = max((sample_passes(res, run, s) for s in run.seeds), key=lambda c: c.gradient)
    ratio = counted.gradient / total
    return Found(
        f"{claim.run}: {counted.gradient:,.0f} gradient sample passes (distillation "
        f"{counted.distillation:,.0f} + Eq. 1 importance {counted.importance:,}) over the teacher's training "
        f"{total:,} (ratio "
        f"{ratio:.3f}, needs ≤ {bound}); forward-only passes, not in the ratio: {counted.forward_only:,} "
        "(validation checks, teacher outputs over D_d, Block Influence)",
        verdict=held(ratio <= bound),
    )


def _redundancy(claim: Claim, res: CompressionResult, frame: pd.DataFrame) -> Found | None:
    """P4: the final structure, given the teacher's whole recipe, reaches the teacher within the margin
    overall and on knowledge questions (Δ = run − teacher, both intervals above −threshold)."""
    mine = run_vectors(res, claim.run)  # (premise() checked that the run exists)
    theirs = teacher_vectors(res, len(mine))
    mask = knowledge_mask(res)
    if mask.sum() < 2:
        return None
    overall = paired_test(mine, theirs)
    knows = paired_test([v[mask] for v in mine], [v[mask] for v in theirs])
    bound = claim.threshold
    acc = accuracies(frame)[claim.run]
    text = (
        f"{claim.run} {mean_std(acc)} vs teacher {float(theirs[0].mean()):.3f}: overall {stats(overall)}; "
        f"knowledge questions {float(np.mean([v[mask].mean() for v in mine])):.3f} vs "
        f"{float(theirs[0][mask].mean()):.3f}, {stats(knows)} (needs both intervals above −{bound})"
    )
    return Found(text, verdict=held(overall.low >= -bound and knows.low >= -bound))


def _teacher_best(claim: Claim, res: CompressionResult, teacher: pd.DataFrame) -> Found | None:
    """P5: on the samples that need no knowledge, no model trained on D_d alone beats the teacher on any
    task (Δ = model − teacher per task, no interval above 0), and the teacher is within the threshold of the
    oracle ceiling."""
    mask, split = knowledge_mask(res), res.test_split
    ceiling, t_acc = split.ceiling, value(teacher, "overall")
    if ceiling is None or t_acc is None:
        return None
    tasks = np.array([TASKS[int(c)] for c in split.tasks])
    parts, beaten = [], []
    for label in claim.runs:
        mine = run_vectors(res, label)
        if not mine:
            return None
        theirs = teacher_vectors(res, len(mine))
        cells = []
        for task in TASKS:
            keep = ~mask & (tasks == task)
            if keep.sum() < 2:
                continue
            p = paired_test([v[keep] for v in mine], [v[keep] for v in theirs])
            cells.append(f"{task} {p.delta:+.3f} [{p.low:+.3f}, {p.high:+.3f}]")
            if p.low > 0:
                beaten.append(f"{label} on {task}")
        parts.append(f"{label}: {', '.join(cells)}")
    gap = ceiling - t_acc
    text = (
        f"no-knowledge samples, Δ = model − teacher per task (95% CI): {'; '.join(parts)}; beats the "
        f"teacher: {', '.join(beaten) or 'none'}. Teacher {t_acc:.3f} vs oracle ceiling {ceiling:.3f} (gap "
        f"{gap:.3f}, needs ≤ {claim.threshold})"
    )
    return Found(text, verdict=held(not beaten and gap <= claim.threshold))


def held(ok: bool) -> str:
    return "holds" if ok else "fails"
