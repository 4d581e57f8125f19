"""The claims report: for each claim declared in an experiment's YAML, its evidence, ours (with spread), and
a verdict.

Why computed: a verdict typed by hand drifts from the numbers; this one is recomputed from the result files
on every `run_all` / `report`. Nothing here names an experiment or a run: each claim says which runs it
compares and how (harness/config/claims.py). The rule is written into the report itself: every comparison is
paired over the shared test samples and the seeds (harness/report/paired.py), because comparing seed means
alone throws away the pairing that gives the test its power; each family of claims is read once more with
Holm's adjustment, since about twenty rows each tested at 95% would otherwise find something by chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.cache import write_atomic
from harness.config.claims import Claim
from harness.config.experiment import Experiment
from harness.config.loading import experiment_files, load_experiment, replicate_problems
from harness.registry import claim_test
from harness.report.budget import budget_note
from harness.report.claim_tests import Found
from harness.report.frame import frame_of, load_results
from harness.report.paired import (
    BORDER,
    TEST_DESCRIPTION,
    Paired,
    adjusted_verdict,
    holm,
)
from harness.report.vectors import (
    KNOWLEDGE_SPLIT,
    by_knowledge,
)
from harness.results import CompressionResult, CurvesResult, Result

HYPOTHESIS_VERDICTS = {
    "reproduced": "holds",
    "not reproduced": "does not hold (peer better)",
    "inconclusive": "inconclusive",
    "not run": "not run",
}
TEACHERS = (
    " Every run of a row starts from one teacher, so its interval never covers the teacher's own variance: "
    "the last column repeats the claims a reader cites most on teachers trained with other seeds (one "
    "compression seed each, on the comparisons those runs hold) and says when the verdict depends on the "
    "teacher."
)
PLURAL = {"rules out": "rule out", "compatible with": "are compatible with"}  # claims_summary's wording
FAMILIES = {
    "paper": "the paper's claims (C-rows)",
    "baselines": "our method against peers after distillation (B-rows)",
    "curves": "criteria without recovery (pruning-curve rows)",
}


def _worded(claim: Claim, verdict: str) -> str:
    """A hypothesis of ours (no `paper:`) says 'holds' or 'does not hold', a paper claim 'reproduced'."""
    hypothesis = claim.paper is None and claim.test != "premise"
    return HYPOTHESIS_VERDICTS.get(verdict, verdict) if hypothesis else verdict


def declared(experiments: list[Experiment]) -> list[tuple[Experiment, Claim]]:
    """Every claim: the stand-in's premises first, then the paper's claims, then hypotheses of ours (no
    `paper:`), each in experiment order."""
    claims = [(e, c) for e in experiments for c in e.claims]
    ids = [c.id for _, c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claims: ids must be unique across experiments, got {ids}")
    premise_id = lambda c: c.id if c.test == "premise" else ""  # noqa: E731 (premises in their own order)
    return sorted(claims, key=lambda ec: (ec[1].test != "premise", ec[1].paper is None, premise_id(ec[1])))


def _adjust(found: dict[str, Found], family_of: dict[str, str]) -> tuple[dict[str, str], dict[str, list]]:
    """Each claim's verdict with Holm's adjustment over every comparison of its family
    (harness/config/claims.py `family`): a family of m comparisons keeps its family-wise error at 1 − LEVEL.
    Also each claim's comparisons' adjusted p-values, in order."""
    adjusted, adjusted_ps = {}, {}
    for family in set(family_of.values()):
        ids = [i for i in found if family_of[i] == family and found[i].comparisons and not found[i].verdict]
        tests = [(i, p, t) for i in ids for p, t in found[i].comparisons]
        ps = holm([p.p_value(t) for _, p, t in tests])
        for i in ids:
            adjusted_ps[i] = [q for (j, _, _), q in zip(tests, ps, strict=True) if j == i]
            pairs = zip(found[i].comparisons, adjusted_ps[i], strict=True)
            mine = [adjusted_verdict(p, q, t) for (p, t), q in pairs]
            adjusted[i] = found[i].decide(mine)
    return adjusted, adjusted_ps


def fixed(x: float) -> float:
    """6 decimals in claims.json: a library's last bit never moves the file."""
    return round(x, 6)


def sig(x: float | None) -> float | None:
    """6 significant digits (p-values span many decades)."""
    return float(f"{x:.6g}") if x is not None else None


def _interval(p: Paired) -> dict:
    low, high = p.interval()
    return {"delta": fixed(p.delta), "low": fixed(low), "high": fixed(high), "n_samples": p.n_samples}


def _split(f: Found, res: Result | None) -> list[dict]:
    """Each comparison of a claim again on the no-knowledge samples and on the knowledge questions
    (harness/report/vectors.py `by_knowledge`); comparisons without knowledge groups are left out."""
    out = []
    for name, a, b in f.parts:
        found = by_knowledge(res, a, b) if res is not None else None
        if found:
            out.append({"comparison": name, **{k: _interval(p) for k, p in found.items()}})
    return out


def _split_cell(r: dict) -> str:
    """The 'By knowledge' cell: Δ and its 95% interval on each part, per comparison."""
    if not r["by_knowledge"]:
        return "—"
    return "; ".join(
        f"{c['comparison']}: "
        + ", ".join(
            f"{KNOWLEDGE_SPLIT[k]} {c[k]['delta']:+.3f} [{c[k]['low']:+.3f}, {c[k]['high']:+.3f}]"
            for k in KNOWLEDGE_SPLIT
        )
        for c in r["by_knowledge"]
    )


def _numbers(f: Found, holm_ps: list[float] | None) -> list[dict]:
    """Each comparison of a claim as numbers (claims.json): Δ, interval, MDE, p-values and verdicts."""
    out = []
    for k, (p, threshold) in enumerate(f.comparisons):
        low, high = p.interval()
        q = holm_ps[k] if holm_ps else None
        out.append(
            {
                "delta": fixed(p.delta),
                "low": fixed(low),
                "high": fixed(high),
                "se": fixed(p.se),
                "mde": fixed(p.mde),
                "threshold": threshold,
                "n_samples": p.n_samples,
                "n_seeds": p.n_seeds,
                "p": sig(p.p_value(threshold)),
                "p_holm": sig(q),
                "verdict": p.verdict(threshold),
                "verdict_holm": adjusted_verdict(p, q, threshold) if q is not None else None,
            }
        )
    return out


def _restricted(claim: Claim, labels: set[str]) -> Claim | None:
    """The part of `claim` that a replicate with runs `labels` can test: its pairs whose runs it has; None
    when it has none, or lacks the run the claim follows."""
    if claim.pairs:
        pairs = [p for p in claim.pairs if {p.better, p.worse} <= labels]
        return claim.model_copy(update={"pairs": pairs}) if pairs else None
    if claim.run and claim.run not in labels or any(r not in labels for r in claim.runs):
        return None
    return claim


def replications(
    results: dict[str, Result], experiments: list[Experiment], frames: dict[str, pd.DataFrame]
) -> dict[str, list[tuple[int, int, str, str]]]:
    """Claim id → [(teacher seed, compression seeds, what was compared, verdict)]: each claim that an
    experiment `replicates`, tested on the teacher of its own experiment and on every replicate's,
    restricted to the comparisons the replicate ran, so each teacher answers the same question."""
    if problems := replicate_problems(experiments):
        raise ValueError("; ".join(problems))
    home = {c.id: (e, c) for e, c in declared(experiments)}
    out: dict[str, list[tuple[int, int, str, str]]] = {}
    for rep in (e for e in experiments if e.replicates):
        res = results.get(rep.name)
        for cid in rep.replicates:
            exp, claim = home[cid]
            main = results.get(exp.name)
            if res is None or main is None or not isinstance(main, CompressionResult):
                continue
            part = _restricted(claim, {r.label for r in res.runs})
            if part is None:
                continue
            what = "; ".join(f"{p.better} vs {p.worse}" for p in part.pairs) or claim.run or ""
            rows = out.setdefault(cid, [])
            for r, name in ([] if rows else [(main, exp.name)]) + [(res, rep.name)]:
                found = claim_test(claim.test)(part, exp, r, frames[name])
                if found is not None:
                    seed = r.profile.teacher.get("seed", 0)
                    rows.append((seed, len(r.seeds), what, _worded(claim, found.raw())))
    return out


def claim_rows(results: dict[str, Result], experiments: list[Experiment]) -> list[dict]:
    """One row per claim: a paper claim without results says 'not run'; a hypothesis without them is left
    out. Each row has its verdict on its own ('verdict') and within its family after Holm's adjustment
    ('adjusted'); below a failing premise both give way to 'untestable on this stand-in'."""
    frames = {
        n: frame_of({n: r}) for n, r in results.items() if isinstance(r, CompressionResult | CurvesResult)
    }
    found: dict[str, Found] = {}
    home = {c.id: e for e, c in declared(experiments)}
    for exp, claim in declared(experiments):
        res, frame = results.get(exp.name), frames.get(exp.name)
        got = claim_test(claim.test)(claim, exp, res, frame) if frame is not None else None
        if got is None and claim.paper is None:
            continue
        found[claim.id] = got or Found("not run", verdict="not run")
    claims = {c.id: c for _, c in declared(experiments)}
    adjusted, holm_ps = _adjust(found, {i: claims[i].family for i in found})
    rows = []
    for i, f in found.items():
        claim = claims[i]
        adj = adjusted.get(i)
        close = [f"{t:+.2f}" if t else "0" for p, t in f.comparisons if p.borderline(t)]
        rows.append(
            {
                "id": i,
                "family": claim.family,
                "premise": claim.test == "premise",
                "test": claim.test,
                "claim": claim.title,
                "paper": claim.paper or "not in the paper",
                "ours": f.ours,
                "verdict": _worded(claim, f.raw()),
                "adjusted": _worded(claim, adj) if adj else None,
                "borderline": ", ".join(close),
                "comparisons": len(f.comparisons),
                "tests": _numbers(f, holm_ps.get(i)),
                "readings": f.readings,
                "by_knowledge": _split(f, results.get(home[i].name)),
            }
        )
    across = replications(results, experiments, frames)
    for r in rows:
        by_teacher = across.get(r["id"], [])
        r["teachers"] = by_teacher
        r["teacher_dependent"] = len({v for *_, v in by_teacher}) > 1 if len(by_teacher) > 1 else None
    failed = [r["id"] for r in rows if r["premise"] and r["verdict"] == "fails"]
    for r in rows:  # a claim tested on a stand-in that breaks the paper's premise says nothing of the paper
        r["untestable"] = (
            f"{', '.join(failed)} {'fails' if len(failed) == 1 else 'fail'}"
            if (failed and not r["premise"])
            else ""
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


def _ids(rows: list[dict], key: str) -> str:
    """'reproduced: C2; inconclusive: C3, C5' for the rows' values of `key`, in the order first seen."""
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r[key], []).append(r["id"])
    return "; ".join(f"{v}: {', '.join(ids)}" for v, ids in by.items())


def _span(ids: list[str]) -> str:
    """'P1–P5' for the premise rows (in order), 'P1' for one."""
    return f"{ids[0]}–{ids[-1]}" if len(ids) > 1 else "".join(ids) or "(none)"


def _and(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]}"


def claims_summary(rows: list[dict]) -> str:
    """A few generated lines of what claims.md shows (the README quotes them): premises, then each family's
    verdicts on their own and after Holm, then how our intervals read the paper's own effects."""
    premises = [r for r in rows if r["premise"]]
    failed = [r["id"] for r in premises if r["verdict"] == "fails"]
    lines = ["Premises: " + ", ".join(f"{r['id']} {r['verdict']}" for r in premises) + "."]
    if failed:
        lines[0] += (
            f" With {_and(failed)} failing, every claim below is untestable on this stand-in; what "
            "the runs alone show:"
        )
    for family, name in FAMILIES.items():
        mine = [r for r in rows if r["family"] == family and r["adjusted"]]
        if mine:
            lines.append(f"- {name}: {_ids(mine, 'verdict')}. After Holm: {_ids(mine, 'adjusted')}.")
    replicated = [r for r in rows if r["teacher_dependent"] is not None]
    if replicated:
        seeds = sorted({str(seed) for r in replicated for seed, *_ in r["teachers"]})
        same = [r["id"] for r in replicated if not r["teacher_dependent"]]
        differ = [r["id"] for r in replicated if r["teacher_dependent"]]
        lines.append(
            f"- Across teachers (seeds {', '.join(seeds)}): the same verdict on every teacher: "
            f"{', '.join(same) or 'none'}; depends on the teacher: {', '.join(differ) or 'none'}."
        )
    read = {}
    for r in rows:
        for reading in r["readings"]:
            read.setdefault(reading, {}).setdefault(r["id"], 0)
            read[reading][r["id"]] += 1
    if read:
        parts = [
            f"{PLURAL[reading]} the paper's own Δ in "
            + ", ".join(f"{i} ({n}×)" if n > 1 else i for i, n in ids.items())
            for reading, ids in read.items()
        ]
        lines.append("- Our 95% intervals " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def _verdict_cells(r: dict) -> tuple[str, str]:
    """The Verdict and Holm cells of a row: below a failing premise, 'untestable' first and what the runs
    alone say after it."""
    adj = r["adjusted"] or "—"
    close = f", borderline: a bound within {BORDER} of {r['borderline']}" if r["borderline"] else ""
    if r["untestable"]:
        return (
            f"**untestable on this stand-in** ({r['untestable']}; the runs alone: {r['verdict']}{close})",
            adj,
        )
    return f"**{r['verdict']}**" + (f" ({close[2:]})" if close else ""), adj


def _teachers_cell(r: dict) -> str:
    """Each teacher's verdict on the comparisons every teacher ran, and whether they agree."""
    if not r["teachers"]:
        return "—"
    what = r["teachers"][0][2]
    verdicts = "; ".join(
        f"teacher seed {seed} ({n} seed{'s' * (n > 1)}): {v}" for seed, n, _, v in r["teachers"]
    )
    agree = "**depends on the teacher**" if r["teacher_dependent"] else "the same on every teacher"
    return f"{what + ': ' if what and r['test'] != 'premise' else ''}{verdicts}; {agree}"


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
    sizes = {f: sum(x["comparisons"] for x in rows if x["family"] == f) for f in FAMILIES}
    families = "; ".join(f"{name}: {sizes[f]} comparisons" for f, name in FAMILIES.items() if sizes[f])
    lines = [
        f"Profile '{profile}'. Each claim of the paper against our runs "
        f"(computed from `{root.name}/*/result.json`). {TEST_DESCRIPTION} A claim is 'reproduced' when the "
        "95% CI of its Δ lies above 0 (C1: above −0.02, a non-inferiority margin), 'not reproduced' when it "
        "lies below, and 'inconclusive' otherwise (or when its comparisons disagree without any going the "
        "other way). Where the paper reports both runs, each comparison says whether our interval rules out "
        "the paper's own Δ or is compatible with it: an inconclusive row that is compatible with the paper's "
        "gain does not contradict the paper, one that rules it out does. The Holm column reads every "
        f"comparison again within its family ({families}) with Holm's step-down adjustment, which keeps the "
        "chance of any false verdict in a family at 5%."
        + (TEACHERS if any(r["teachers"] for r in rows) else "")
        + " The 'By knowledge' column repeats each comparison on the test samples that need no advertiser "
        "knowledge (what D_d can teach) and on the knowledge questions (what only the teacher's pretraining "
        "taught), since a compressed model can keep the first and lose the second."
        + f" Rows {_span([r['id'] for r in rows if r['premise']])} come first: they check that the stand-in "
        "keeps the paper's premise, each on its own; if one fails, every claim below it is untestable on "
        "this stand-in, and the verdict cell says so before what the runs alone show." + hypotheses,
        "",
        "| Claim | Paper | Ours | By knowledge (Δ, 95% CI) | Verdict | Holm (family) | Across teachers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731 (a '|' inside a cell would split it)
    for r in rows:
        verdict, adjusted = _verdict_cells(r)
        lines.append(
            f"| {cell(r['claim'])} | {cell(r['paper'])} | {cell(r['ours'])} | {cell(_split_cell(r))} | "
            f"{verdict} | {adjusted} | "
            f"{cell(_teachers_cell(r))} |"
        )
    for note in (alpha_note(results), budget_note(results)):
        if note:
            lines += ["", note]
    path = root / "claims.md"
    write_atomic(path, "\n".join(lines) + "\n")
    write_atomic(root / "claims_summary.md", claims_summary(rows))
    write_atomic(root / "claims.json", json.dumps({"profile": profile, "claims": rows}, indent=2) + "\n")
    return path
