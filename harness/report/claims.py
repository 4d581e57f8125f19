"""The claims report: for each claim declared in an experiment's YAML, its evidence, ours (with spread), and
a verdict.

Why computed: a verdict typed by hand drifts from the numbers; this one is recomputed from the result files
on every `run_all` / `report`. Nothing here names an experiment or a run: each claim says which runs it
compares and how (harness/claim_spec.py). The rule is written into the report itself: a difference counts
when it exceeds max(2 × its standard error over seeds, NOISE_FLOOR), since one test split of ~1k samples
cannot resolve differences much below one point.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from harness.cache import write_atomic
from harness.claim_spec import Claim
from harness.report.frame import frame_of, load_results, mean_std, pick, summary, value, values
from harness.results import CompressionResult, Result
from harness.spec import Experiment, experiment_files, load_experiment

NOISE_FLOOR = 0.01
KEPT = 0.02  # kept_quality: "quality kept" = the final model within 2 points of the teacher

HYPOTHESIS_VERDICTS = {
    "reproduced": "holds",
    "not reproduced": "does not hold (peer better)",
    "inconclusive": "inconclusive",
}


def compare(better: list[float], worse: list[float]) -> tuple[float, float, str]:
    """Δ = mean(better) − mean(worse), the threshold it must pass, and the verdict on 'better > worse'."""
    delta = statistics.fmean(better) - statistics.fmean(worse)
    se = 0.0
    if len(better) > 1 and len(worse) > 1:
        se = math.sqrt(statistics.variance(better) / len(better) + statistics.variance(worse) / len(worse))
    threshold = max(2 * se, NOISE_FLOOR)
    verdict = (
        "reproduced" if delta > threshold else "not reproduced" if delta < -threshold else "inconclusive"
    )
    return delta, threshold, verdict


def combine(verdicts: list[str]) -> str:
    """All comparisons hold: reproduced; any goes significantly the other way: not reproduced; else
    inconclusive."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "inconclusive"


def _accuracies(frame: pd.DataFrame) -> pd.Series:
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


def pairwise(
    claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame
) -> tuple[str, str] | None:
    """Each pair whose runs are in the result: 'A vs B' with ours (and the paper's values, where the YAML
    gives both); None when no pair's runs are."""
    accs, paper = _accuracies(frame), {r.label: r.paper.overall if r.paper else None for r in exp.runs}
    lines, verdicts = [], []
    for pair in (p for p in claim.pairs if p.better in accs and p.worse in accs):
        a, b = accs[pair.better], accs[pair.worse]
        delta, thr, verdict = compare(a, b)
        p_better, p_worse = paper.get(pair.better), paper.get(pair.worse)
        cited = (
            f"; paper {p_better:.3f} vs {p_worse:.3f}" if p_better is not None and p_worse is not None else ""
        )
        lines.append(
            f"{pair.better} {mean_std(a)} vs {pair.worse} {mean_std(b)} "
            f"(Δ {delta:+.3f}, needs > {thr:.3f}{cited}){_same_blocks(claim, res, pair.better, pair.worse)}"
        )
        verdicts.append(verdict)
    return ("; ".join(lines), combine(verdicts)) if lines else None


def kept_quality(
    claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame
) -> tuple[str, str] | None:
    """Sizes fall through the stage ends of the run's first seed, it is faster than the teacher at every
    measured batch size, and its accuracy stays within KEPT of the teacher's."""
    run = next((r for r in res.runs if r.label == claim.run), None)
    if run is None:
        return None
    teacher, stages = pick(frame, role="teacher"), pick(frame, role="stage", label=run.label)
    ends = pick(stages, seed=run.seeds[0].seed)
    if ends.empty:
        return None
    sizes = [value(teacher, "params_total"), *values(ends, "params_total")]
    last = pick(ends, stage=ends["stage"].iloc[-1], metric="samples_per_s")
    ups = {
        int(b): v / base
        for b, v in zip(last["batch_size"], last["value"], strict=True)
        if (base := value(teacher, "samples_per_s", b))
    }
    final, t_acc = _accuracies(frame)[run.label], value(teacher, "overall")
    drop = t_acc - statistics.fmean(final)
    per_stage = summary(stages, "overall", by=("stage",))
    after = ", ".join(
        f"{s} {mean_std(v)}" for s, v in zip(per_stage["stage"], per_stage["values"], strict=True)
    )
    ours = (
        f"{sizes[0] / 1e6:.2f}M → {sizes[-1] / 1e6:.2f}M parameters ({sizes[0] / sizes[-1]:.1f}×), speed-up "
        + ", ".join(f"{u:.2f}× at batch {b}" for b, u in ups.items())
        + f"; accuracy {t_acc:.3f} → {mean_std(final)} (after each stage: {after})"
    )
    shrinks = all(a > b for a, b in zip(sizes, sizes[1:], strict=False))
    faster = bool(ups) and all(u > 1 for u in ups.values())
    if shrinks and faster and drop <= KEPT:
        verdict = "reproduced"
    elif drop > KEPT + NOISE_FLOOR or not shrinks or not faster:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return ours + f" (kept = within {KEPT:.2f})", verdict


def trend(
    claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame
) -> tuple[str, str] | None:
    """Accuracy at each size of D_d (first seed's count), and the run with the most samples against the run
    with the fewest."""
    accs = _accuracies(frame)
    if not all(label in accs for label in claim.runs):
        return None
    runs = pick(frame, role="run")
    points = ", ".join(
        f"{int(values(pick(runs, label=label), 'd_d_samples')[0])}: {mean_std(accs[label])}"
        for label in claim.runs
    )
    delta, thr, verdict = compare(accs[claim.runs[-1]], accs[claim.runs[0]])
    return f"{points} (largest vs smallest Δ {delta:+.3f}, needs > {thr:.3f})", verdict


TESTS = {"pairwise": pairwise, "kept_quality": kept_quality, "trend": trend}


def declared(experiments: list[Experiment]) -> list[tuple[Experiment, Claim]]:
    """Every claim: the paper's first, then hypotheses of ours (no `paper:`), each in experiment order."""
    claims = [(e, c) for e in experiments for c in e.claims]
    ids = [c.id for _, c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claims: ids must be unique across experiments, got {ids}")
    return sorted(claims, key=lambda ec: ec[1].paper is None)


def claim_rows(results: dict[str, Result], experiments: list[Experiment]) -> list[dict]:
    """One row per claim: a paper claim without results says 'not run'; a hypothesis without them is left
    out."""
    frames = {n: frame_of({n: r}) for n, r in results.items() if isinstance(r, CompressionResult)}
    rows = []
    for exp, claim in declared(experiments):
        res, frame = results.get(exp.name), frames.get(exp.name)
        found = TESTS[claim.test](claim, exp, res, frame) if frame is not None else None
        if found is None and claim.paper is None:
            continue
        ours, verdict = found or ("not run", "not run")
        if claim.paper is None:
            verdict = HYPOTHESIS_VERDICTS[verdict]
        rows.append(
            {
                "claim": claim.title,
                "paper": claim.paper or "not in the paper",
                "ours": ours,
                "verdict": verdict,
            }
        )
    return rows


def alpha_note(results: dict[str, Result]) -> str:
    """Whether the tolerance α ever stopped a stage: the largest drop of validation accuracy from a stage's
    start, over every iterative run that α governs (runs pruned to a target size ignore it), each run once."""
    seen, worst, alpha = set(), None, None
    for res in results.values():
        if not isinstance(res, CompressionResult):
            continue
        for run in res.runs:
            if run.spec.mode != "iterative" or run.spec.target_share is not None:
                continue
            alpha = res.profile.compression.alpha
            for s in (s for s in run.seeds if s.run not in seen):
                seen.add(s.run)
                p, stage = s.p_teacher_validation.overall, None
                for row in s.trace:
                    if row.stage != stage:
                        stage, start = row.stage, p
                    p = row.acc_distilled
                    if worst is None or start - p > worst[0]:
                        worst = (start - p, f"{run.label}, seed {s.seed}, {stage} stage")
    if worst is None:
        return ""
    fired = (
        "so α was never reached and stopped no stage"
        if worst[0] < alpha
        else "so α was reached at least once (a stage stops there unless it was at its maximum anyway)"
    )
    return (
        f"Tolerance α = {alpha}: over the {len(seen)} iterative runs (run × seed) that α governs, the "
        f"largest drop of validation accuracy from a stage's start is {worst[0]:.3f} ({worst[1]}), {fired}."
    )


def write_claims(root: Path, experiments: list[Experiment] | None = None) -> Path:
    """`<root>/claims.md`: one row per claim of `experiments` (default: every experiment file), from whatever
    result files exist."""
    root = Path(root)
    experiments = experiments if experiments is not None else [load_experiment(f) for f in experiment_files()]
    results = load_results(root)
    rows = claim_rows(results, experiments)
    profile = next((r.profile.name for r in results.values()), "?")
    ours = [c.id for _, c in declared(experiments) if c.paper is None]
    hypotheses = (
        f" Rows {ours[0]}–{ours[-1]} are not the paper's: each says whether our method beats a peer at the "
        "same final structure ('holds'), the peer beats it, or neither difference counts."
        if len(ours) > 1
        else f" Row {ours[0]} is not the paper's: it says whether our method beats a peer at the same final "
        "structure ('holds'), the peer beats it, or neither difference counts."
        if ours
        else ""
    )
    lines = [
        f"Profile '{profile}'. Each claim of the paper against our runs "
        f"(computed from `{root.name}/*/result.json`). "
        f"A difference counts when it exceeds max(2 × its standard error over seeds, {NOISE_FLOOR}); "
        "'inconclusive' means it did not, or that comparisons disagree without any going the other way."
        + hypotheses,
        "",
        "| Claim | Paper | Ours | Verdict |",
        "| --- | --- | --- | --- |",
    ]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 (a '|' inside a cell would split it)
    lines += [
        f"| {cell(r['claim'])} | {cell(r['paper'])} | {cell(r['ours'])} | **{r['verdict']}** |" for r in rows
    ]
    if note := alpha_note(results):
        lines += ["", note]
    path = root / "claims.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
