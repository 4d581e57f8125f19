"""The claims report: for each claim declared in an experiment's YAML, its evidence, ours (with spread), and
a verdict.

Why computed: a verdict typed by hand drifts from the numbers; this one is recomputed from the result files
on every `run_all` / `report`. Nothing here names an experiment or a run: each claim says which runs it
compares and how (harness/claim_spec.py). The rule is written into the report itself: every comparison is
a paired bootstrap over the shared test samples and the seeds (harness/report/paired.py), because comparing
seed means alone throws away the pairing that gives the test its power.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

from harness.cache import write_atomic
from harness.claim_spec import Claim
from harness.report.budget import budget_note
from harness.report.frame import frame_of, load_results, mean_std, pick, summary, value, values
from harness.report.paired import TEST_DESCRIPTION, combine, paired_bootstrap
from harness.report.vectors import compare, curve_scores, knowledge_mask, run_vectors, stats, teacher_vectors
from harness.results import CompressionResult, CurvesResult, Result
from harness.spec import Experiment, experiment_files, load_experiment

KEPT = 0.02  # kept_quality: "quality kept" = the final model within 2 points of the teacher

HYPOTHESIS_VERDICTS = {
    "reproduced": "holds",
    "not reproduced": "does not hold (peer better)",
    "inconclusive": "inconclusive",
    "not run": "not run",
}


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
        p = compare(res, pair.better, pair.worse)
        if p is None:
            return (
                f"{pair.better} vs {pair.worse}: no per-sample records (result older than the paired test)",
                "not run",
            )
        p_better, p_worse = paper.get(pair.better), paper.get(pair.worse)
        cited = (
            f"; paper {p_better:.3f} vs {p_worse:.3f}" if p_better is not None and p_worse is not None else ""
        )
        lines.append(
            f"{pair.better} {mean_std(accs[pair.better])} vs {pair.worse} {mean_std(accs[pair.worse])} "
            f"({stats(p)}{cited}){_same_blocks(claim, res, pair.better, pair.worse)}"
        )
        verdicts.append(p.verdict)
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
    mine = run_vectors(res, run.label)
    theirs = teacher_vectors(res, len(mine)) if mine else None
    if mine is None or theirs is None:
        return "no per-sample records (result older than the paired test)", "not run"
    p = paired_bootstrap(mine, theirs)  # Δ = final − teacher: kept when its whole interval is above −KEPT
    per_stage = summary(stages, "overall", by=("stage",))
    after = ", ".join(
        f"{s} {mean_std(v)}" for s, v in zip(per_stage["stage"], per_stage["values"], strict=True)
    )
    ours = (
        f"{sizes[0] / 1e6:.2f}M → {sizes[-1] / 1e6:.2f}M parameters ({sizes[0] / sizes[-1]:.1f}×), speed-up "
        + ", ".join(f"{u:.2f}× at batch {b}" for b, u in ups.items())
        + f"; accuracy {t_acc:.3f} → {mean_std(final)} ({stats(p)} vs the teacher; after each stage: {after})"
    )
    shrinks = all(a > b for a, b in zip(sizes, sizes[1:], strict=False))
    faster = bool(ups) and all(u > 1 for u in ups.values())
    if shrinks and faster and p.low > -KEPT:
        verdict = "reproduced"
    elif p.high < -KEPT or not shrinks or not faster:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return ours + f" (kept = the whole interval above −{KEPT:.2f})", verdict


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
    p = compare(res, claim.runs[-1], claim.runs[0])
    if p is None:
        return f"{points}; no per-sample records (result older than the paired test)", "not run"
    return f"{points} (largest vs smallest: {stats(p)})", p.verdict


def premise(
    claim: Claim, exp: Experiment, res: CompressionResult, frame: pd.DataFrame
) -> tuple[str, str] | None:
    """A condition of the stand-in (claim_spec.py `check`), measured: 'holds' or 'fails'."""
    teacher = pick(frame, role="teacher")
    runs = pick(frame, role="run", label=claim.run) if claim.run else None
    bound = claim.threshold
    if claim.check == "unseen_knowledge":
        acc = value(teacher, "knowledge_unseen")
        if acc is None:
            return None
        ok = acc >= bound
        return (
            f"teacher {acc:.3f} on knowledge questions about advertisers D_d never names (needs ≥ {bound})",
            _held(ok),
        )
    if runs is None or runs.empty:
        return None
    if claim.check == "scratch_gap":
        t, scratch = value(teacher, "knowledge"), values(runs, "knowledge")
        if t is None or not scratch:
            return None
        gap = t - statistics.fmean(scratch)
        mask = knowledge_mask(res)
        mine = run_vectors(res, claim.run, mask)
        theirs = teacher_vectors(res, len(mine), mask) if mine else None
        paired = f", {stats(paired_bootstrap(theirs, mine))}" if mine and theirs else ""
        return (
            f"knowledge questions: teacher {t:.3f}, {claim.run} {mean_std(scratch)} "
            f"(gap {gap:.3f}, needs ≥ {bound}{paired})",
            _held(gap >= bound),
        )
    passes, total = values(runs, "distillation_sample_passes"), value(teacher, "training_sample_passes")
    if not passes or not total:
        return None
    ratio = max(passes) / total
    return (
        f"{claim.run} distils on {max(passes):,.0f} sample passes, the teacher trained on {total:,.0f} "
        f"(ratio {ratio:.3f}, needs ≤ {bound})",
        _held(ratio <= bound),
    )


def curve_area(
    claim: Claim, exp: Experiment, res: CurvesResult, frame: pd.DataFrame
) -> tuple[str, str] | None:
    """At each level that followed both criteria of a pair (or the claim's level): the better criterion's
    curve keeps more test accuracy over its steps, paired per sample and seed."""
    levels = [claim.level] if claim.level else list(dict.fromkeys(c.level for c in res.curves))
    lines, verdicts = [], []
    for pair in claim.pairs:
        for level in levels:
            a, b = curve_scores(res, level, pair.better), curve_scores(res, level, pair.worse)
            if a is None or b is None or len(a) != len(b):
                continue
            p = paired_bootstrap(a, b)
            area = lambda s: mean_std([float(x.mean()) for x in s])  # noqa: E731
            lines.append(f"{level}: {pair.better} area {area(a)} vs {pair.worse} {area(b)} ({stats(p)})")
            verdicts.append(p.verdict)
    return ("; ".join(lines), combine(verdicts)) if lines else None


def _held(ok: bool) -> str:
    return "holds" if ok else "fails"


TESTS = {
    "pairwise": pairwise,
    "kept_quality": kept_quality,
    "trend": trend,
    "premise": premise,
    "curve_area": curve_area,
}


def declared(experiments: list[Experiment]) -> list[tuple[Experiment, Claim]]:
    """Every claim: the stand-in's premises first, then the paper's claims, then hypotheses of ours (no
    `paper:`), each in experiment order."""
    claims = [(e, c) for e in experiments for c in e.claims]
    ids = [c.id for _, c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claims: ids must be unique across experiments, got {ids}")
    return sorted(claims, key=lambda ec: (ec[1].test != "premise", ec[1].paper is None))


def claim_rows(results: dict[str, Result], experiments: list[Experiment]) -> list[dict]:
    """One row per claim: a paper claim without results says 'not run'; a hypothesis without them is left
    out."""
    frames = {
        n: frame_of({n: r}) for n, r in results.items() if isinstance(r, CompressionResult | CurvesResult)
    }
    rows = []
    for exp, claim in declared(experiments):
        res, frame = results.get(exp.name), frames.get(exp.name)
        found = TESTS[claim.test](claim, exp, res, frame) if frame is not None else None
        if found is None and claim.paper is None:
            continue
        ours, verdict = found or ("not run", "not run")
        if claim.paper is None and claim.test != "premise":
            verdict = HYPOTHESIS_VERDICTS[verdict]
        rows.append(
            {
                "id": claim.id,
                "premise": claim.test == "premise",
                "claim": claim.title,
                "paper": claim.paper or "not in the paper",
                "ours": ours,
                "verdict": verdict,
            }
        )
    failed = [r["id"] for r in rows if r["premise"] and r["verdict"] == "fails"]
    for r in rows:  # a claim tested on a stand-in that breaks the paper's premise says nothing of the paper
        if failed and not r["premise"]:
            r["verdict"] += f" (untestable: {', '.join(failed)} {'fails' if len(failed) == 1 else 'fail'})"
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
    groups: dict[str, list[str]] = {}
    for e, c in declared(experiments):
        if c.paper is None and c.test != "premise":
            groups.setdefault(e.name, []).append(c.id)
    spans = [f"{ids[0]}–{ids[-1]}" if len(ids) > 1 else ids[0] for ids in groups.values()]
    hypotheses = (
        f" Rows {' and '.join(spans)} are not the paper's: each says whether our method (or criterion) "
        "beats a peer ('holds'), the peer beats it, or neither difference counts."
        if spans
        else ""
    )
    lines = [
        f"Profile '{profile}'. Each claim of the paper against our runs "
        f"(computed from `{root.name}/*/result.json`). "
        f"Every comparison is paired per test sample and seed. {TEST_DESCRIPTION} A claim is 'reproduced' "
        "when the 95% CI of its Δ lies above 0, 'not reproduced' when it lies below, and 'inconclusive' "
        "otherwise (or when its comparisons disagree without any going the other way). An inconclusive row "
        "whose |Δ| is below its MDE says that this test split and these seeds cannot resolve the difference, "
        "not that the methods are equal. Rows P1–P3 come first: they check that the stand-in keeps the "
        "paper's premise; if one fails, the claims below it cannot be tested on this stand-in." + hypotheses,
        "",
        "| Claim | Paper | Ours | Verdict |",
        "| --- | --- | --- | --- |",
    ]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 (a '|' inside a cell would split it)
    lines += [
        f"| {cell(r['claim'])} | {cell(r['paper'])} | {cell(r['ours'])} | **{r['verdict']}** |" for r in rows
    ]
    for note in (alpha_note(results), budget_note(results)):
        if note:
            lines += ["", note]
    path = root / "claims.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
