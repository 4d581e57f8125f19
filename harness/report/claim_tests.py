"""The claim tests: how a claim declared in an experiment's YAML is decided from its result's per-sample
records (`pairwise`, `kept_quality`, `trend`, `curve_area`; the premises' `premise` is
harness/report/premises.py). Each is registered in harness/registry.py `CLAIM_TESTS` and returns what it
found (`Found`): the Ours cell, the paired comparisons it rests on and how they decide it, so that
harness/report/claims.py can adjust a family's verdicts for multiplicity and split each comparison by
knowledge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from harness.config.claims import Claim
from harness.config.experiment import Experiment
from harness.report.frame import mean_std, pick, summary, value, values
from harness.report.paired import Paired, combine, paired_test
from harness.report.vectors import (
    area,
    curve_scores,
    paired_vectors,
    run_vectors,
    seed_free,
    stats,
    teacher_vectors,
)
from harness.results import CompressionResult, CurvesResult, RunRecord

KEPT = 0.02  # kept_quality: "quality kept" = the final model within 2 points of the teacher


@dataclass
class Found:
    """What a claim's test found: the text of the Ours cell, the paired comparisons it rests on (each read
    against its threshold) and how their verdicts make the claim's (`decide`), so that a family's
    multiplicity adjustment (claim_rows) can re-decide it from adjusted verdicts."""

    ours: str
    comparisons: list[tuple[Paired, float]] = field(default_factory=list)
    decide: Callable[[list[str]], str] = combine
    verdict: str | None = None  # premises and rows without records: decided without comparisons
    readings: list[str] = field(default_factory=list)  # per comparison with the paper's Δ: how ours reads it
    # per comparison: its name and the two sides' per-sample vectors, which claim_rows splits by knowledge
    parts: list[tuple[str, list, list]] = field(default_factory=list)

    def raw(self) -> str:
        return self.verdict or self.decide([p.verdict(t) for p, t in self.comparisons])


def accuracies(frame: pd.DataFrame) -> pd.Series:
    """Test accuracy over seeds, per run label."""
    return summary(pick(frame, role="run"), "overall", by=("label",)).set_index("label")["values"]


def _same_blocks(claim: Claim, res: CompressionResult, better: str, worse: str) -> str:
    """The claim's note when both runs dropped the very same blocks in every seed."""
    runs = {r.label: r for r in res.runs}
    ours = [s.blocks_dropped for s in runs[better].seeds]
    theirs = [s.blocks_dropped for s in runs[worse].seeds]
    if claim.same_blocks_note is None or None in ours or None in theirs or ours != theirs:
        return ""
    return f"; {worse} {claim.same_blocks_note} in every seed ({theirs[0]})"


def against_paper(p: Paired, paper_delta: float | None) -> tuple[list[str], str]:
    """The interval read against the paper's own Δ: does our run rule it out, or is it compatible? The
    reading ('rules out' | 'compatible with', none without the paper's Δ) and the text the row shows."""
    if paper_delta is None:
        return [], ""
    low, high = p.interval()
    reading = "compatible with" if low <= paper_delta <= high else "rules out"
    return [reading], f": {reading} the paper's {'gain' if paper_delta > 0 else 'Δ'} of {paper_delta:+.3f}"


def _budget_note(run: RunRecord) -> str:
    """How much distillation a one-shot run got, since C4 reads differently under each budget."""
    if run.spec.mode != "one_shot":
        return ""
    if run.spec.one_shot_budget == "iterative_total":
        return " [one-shot given the iterative run's total epochs]"
    return " [one-shot distilled E epochs once, as Algorithm 1 is written]"


def pairwise(claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame) -> Found | None:
    """Each pair whose runs are in the result: 'A vs B' with ours (and the paper's values, where the YAML
    gives both); None when no pair's runs are."""
    accs, paper = accuracies(frame), {r.label: r.paper.overall if r.paper else None for r in exp.runs}
    runs = {r.label: r for r in res.runs}
    lines, comparisons, readings, parts = [], [], [], []
    for pair in (p for p in claim.pairs if p.better in accs and p.worse in accs):
        found = paired_vectors(res, pair.better, pair.worse)
        if found is None:
            return Found(f"{pair.better} vs {pair.worse}: the runs have different seeds", verdict="not run")
        p = paired_test(*found)
        parts.append((f"{pair.better} vs {pair.worse}", *found))
        p_better, p_worse = paper.get(pair.better), paper.get(pair.worse)
        known = p_better is not None and p_worse is not None
        cited = f"; paper {p_better:.3f} vs {p_worse:.3f}" if known else ""
        read, reading = against_paper(p, p_better - p_worse if known else None)
        readings += read
        lines.append(
            f"{pair.better}{_budget_note(runs[pair.better])} {mean_std(accs[pair.better])} vs "
            f"{pair.worse}{_budget_note(runs[pair.worse])} {mean_std(accs[pair.worse])} "
            f"({stats(p)}{cited}{reading}){_same_blocks(claim, res, pair.better, pair.worse)}"
        )
        comparisons.append((p, 0.0))
    if not lines:
        return None
    missing = [f"{p.better} vs {p.worse}" for p in claim.pairs if p.better not in accs or p.worse not in accs]
    if missing:  # a claim over several comparisons is not reproduced on part of them
        lines.append(f"not run: {', '.join(missing)}")
        return Found("; ".join(lines), comparisons, partial, readings=readings, parts=parts)
    return Found("; ".join(lines), comparisons, readings=readings, parts=parts)


def partial(verdicts: list[str]) -> str:
    """The verdict of a claim some of whose comparisons were not run: it can be refuted, never reproduced."""
    return "not reproduced" if "not reproduced" in verdicts else "inconclusive"


def kept_quality(claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame) -> Found | None:
    """Sizes fall through the stage ends of the run's first seed, it is faster than the teacher at every
    measured batch size, and its accuracy stays within KEPT of the teacher's: a non-inferiority test, the
    whole interval of Δ = final − teacher above −KEPT."""
    run = next((r for r in res.runs if r.label == claim.run), None)
    if run is None:
        return None
    mine = run_vectors(res, run.label)
    theirs = teacher_vectors(res, len(mine))
    p = paired_test(mine, theirs)
    teacher, stages = pick(frame, role="teacher"), pick(frame, role="stage", label=run.label)
    final, t_acc = accuracies(frame)[run.label], value(teacher, "overall")
    ends = pick(stages, seed=run.seeds[0].seed)
    if ends.empty:  # a teacher-variance replicate: the accuracy margin alone (size and speed: the main run)
        accuracy = f"accuracy {t_acc:.3f} → {mean_std(final)} ({stats(p)} vs the teacher"
        return Found(
            f"{accuracy}; size and speed not measured)",
            [(p, -KEPT)],
            parts=[("vs the teacher", mine, theirs)],
        )
    sizes = [value(teacher, "params_total"), *values(ends, "params_total")]
    last = pick(ends, stage=ends["stage"].iloc[-1], metric="samples_per_s")
    ups = {
        int(b): v / base
        for b, v in zip(last["batch_size"], last["value"], strict=True)
        if (base := value(teacher, "samples_per_s", b))
    }
    per_stage = summary(stages, "overall", by=("stage",))
    after = ", ".join(
        f"{s} {mean_std(v)}" for s, v in zip(per_stage["stage"], per_stage["values"], strict=True)
    )
    paper_rows = [r.overall for r in exp.paper if r.overall is not None]
    read, reading = against_paper(p, paper_rows[-1] - paper_rows[0] if len(paper_rows) > 1 else None)
    ours = (
        f"{sizes[0] / 1e6:.2f}M → {sizes[-1] / 1e6:.2f}M parameters ({sizes[0] / sizes[-1]:.1f}×), speed-up "
        + (", ".join(f"{u:.2f}× at batch {b}" for b, u in ups.items()) or "not measured")
        + f"; accuracy {t_acc:.3f} → {mean_std(final)} ({stats(p)} vs the teacher{reading}; after each "
        f"stage: {after}) (kept = the whole interval above −{KEPT:.2f})"
    )
    shrinks = all(a > b for a, b in zip(sizes, sizes[1:], strict=False))
    faster = all(u > 1 for u in ups.values())
    # the interval against −KEPT decides, unless the model did not shrink or speed up; unmeasured speed
    # cannot reproduce the claim
    if not (shrinks and faster):
        decide = lambda vs: "not reproduced"  # noqa: E731
    elif not ups:
        decide = lambda vs: "inconclusive" if vs[0] == "reproduced" else vs[0]  # noqa: E731
    else:
        decide = lambda vs: vs[0]  # noqa: E731
    return Found(ours, [(p, -KEPT)], decide, readings=read, parts=[("vs the teacher", mine, theirs)])


def trend(claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame) -> Found | None:
    """Accuracy at each size of D_d (first seed's count), and the run with the most samples against the run
    with the fewest."""
    accs = accuracies(frame)
    if not all(label in accs for label in claim.runs):
        return None
    runs = pick(frame, role="run")
    points = ", ".join(
        f"{int(values(pick(runs, label=label), 'd_d_samples')[0])}: {mean_std(accs[label])}"
        for label in claim.runs
    )
    found = paired_vectors(res, claim.runs[-1], claim.runs[0])
    if found is None:
        return Found(f"{points}; the runs have different seeds", verdict="not run")
    p = paired_test(*found)
    parts = [("largest vs smallest", *found)]
    return Found(f"{points} (largest vs smallest: {stats(p)})", [(p, 0.0)], parts=parts)


def curve_area(claim: Claim, exp: Experiment, res: CurvesResult, frame: pd.DataFrame) -> Found | None:
    """At each level that followed both criteria of a pair (or the claim's level): the better criterion's
    curve keeps more test accuracy over its steps, paired per sample and seed. A criterion that draws no
    random numbers gives one curve for every seed (harness/recipes/pruning_curves.py): its seeds are one,
    and its interval covers test samples only, conditional on the one D_p."""
    levels = [claim.level] if claim.level else list(dict.fromkeys(c.level for c in res.curves))
    lines, comparisons, parts = [], [], []
    for pair in claim.pairs:
        for level in levels:
            a, b = curve_scores(res, level, pair.better), curve_scores(res, level, pair.worse)
            if a is None or b is None:
                continue
            p = paired_test(*seed_free(a, b))
            lines.append(f"{level}: {pair.better} area {area(a)} vs {pair.worse} {area(b)} ({stats(p)})")
            comparisons.append((p, 0.0))
            parts.append((f"{level}: {pair.better} vs {pair.worse}", *seed_free(a, b)))
    return Found("; ".join(lines), comparisons, parts=parts) if lines else None
