"""The schema of an experiment's `claims:`: what the paper says, and which runs of the experiment test it.

Why declared: a claim's wording, the paper's figures and the runs it compares live in the experiment's YAML
beside those runs, so harness/report/claims.py evaluates them without naming any experiment or run, and a
renamed run fails at validation (harness/config/experiment.py checks every label named here), not in the
report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.config.schema import Strict
from harness.config.vocabulary import StageName
from harness.registry import CLAIM_TESTS

# what each premise check measures (Claim.check)
CHECKS = (
    "premise: scratch_gap: the teacher's knowledge accuracy minus `run`'s (trained from scratch on D_d) "
    "is at least `threshold`; unseen_knowledge: the teacher's accuracy on knowledge questions about "
    "advertisers D_d never names is at least `threshold`; budget_ratio: `run`'s gradient sample passes "
    "(distillation and Eq. 1) over the teacher's training sample passes are at most `threshold`; "
    "redundancy: `run` (the final structure with the teacher's whole recipe) reaches the teacher within "
    "`threshold`, overall and on knowledge questions (both paired intervals above −threshold); "
    "teacher_best: on the samples that need no knowledge, none of `runs` beats the teacher on any task "
    "(no paired interval above 0), and the teacher is within `threshold` of the oracle ceiling"
)


class Pair(Strict):
    """One comparison: the run the claim says is better, and the run it says is worse."""

    better: str = Field(min_length=1)
    worse: str = Field(min_length=1)


class Claim(Strict):
    """One row of claims.md. `test` says how the runs decide it (rules in harness/report/claims.py):
    pairwise: each pair's better run beats its worse one; kept_quality: through the stage ends of `run`, size
    falls, throughput rises and accuracy stays within KEPT of the teacher; trend: the run with the most
    distillation samples (last of `runs`) beats the one with the fewest (first); premise: a condition the
    stand-in must meet for the claims to be testable on it (`check`), shown first, 'holds' or 'fails';
    curve_area: at `level`, each pair's better criterion keeps more accuracy over the whole pruning curve
    (pruning_curves experiments; pairs name criteria)."""

    id: str = Field(pattern=r"^[A-Z][0-9]+[a-z]?$", description="the row's name in claims.md, e.g. C3")
    question: str | None = Field(None, description="the paper's research question it answers, e.g. RQ3")
    text: str = Field(min_length=3, description="the claim, worded as a statement")
    paper: str | None = Field(
        None,
        description="the paper's evidence, as the paper gives it; null: a hypothesis of ours (shown as 'not "
        "in the paper', its verdict worded 'holds' or 'does not hold')",
    )
    test: str = Field(description="how the runs decide it: a claim test of harness/registry.py CLAIM_TESTS")
    family: Literal["premises", "paper", "baselines", "curves"] = Field(
        description="the family whose comparisons share one multiplicity adjustment (Holm, "
        "harness/report/claims.py): premises (conditions, each read on its own), paper (the paper's claims), "
        "baselines (our method against peers), curves (criteria without recovery)"
    )
    pairs: list[Pair] = Field(default=[], description="pairwise: the comparisons, in the order shown")
    run: str | None = Field(
        None, description="kept_quality: the multi-stage run whose stage ends are followed"
    )
    runs: list[str] = Field(
        default=[],
        description="trend: the runs, fewest distillation samples first; premise teacher_best: the models "
        "trained on D_d alone",
    )
    check: Literal["scratch_gap", "unseen_knowledge", "budget_ratio", "redundancy", "teacher_best"] | None = (
        Field(
            None,
            description=CHECKS,
        )
    )
    threshold: float | None = Field(None, ge=0, description="premise: the bound its check compares against")
    level: StageName | None = Field(
        None,
        description="curve_area: the level whose curves `pairs` compare (pairs then name criteria); None: "
        "every level that followed both criteria of a pair",
    )
    same_blocks_note: str | None = Field(
        None,
        description="pairwise: said of the worse run when both dropped the very same blocks in every seed "
        "(the two runs then differ in nothing, and no difference can show)",
    )

    @model_validator(mode="after")
    def _fields_of_its_test(self) -> Claim:
        if self.test not in CLAIM_TESTS:
            raise ValueError(f"test: unknown claim test '{self.test}'; allowed: {', '.join(CLAIM_TESTS)}")
        needs = list(CLAIM_TESTS[self.test].needs)
        if self.test == "premise":
            needs += {"unseen_knowledge": [], "teacher_best": ["runs"]}.get(self.check or "", ["run"])
        owners = {  # every field a claim test uses, and the tests that use it
            field: tuple(t for t, spec in CLAIM_TESTS.items() if field in spec.needs + spec.may)
            for field in ("pairs", "run", "runs", "check", "threshold", "level")
        }
        problems = [
            f"{field}: only for test {' or '.join(map(repr, tests))}, this claim's test is '{self.test}'"
            for field, tests in owners.items()
            if self.test not in tests and getattr(self, field) not in (None, [])
        ]
        problems += [
            f"{field}: test '{self.test}' needs it" for field in needs if getattr(self, field) in (None, [])
        ]
        if self.test == "premise" and self.runs and self.check != "teacher_best":
            problems.append(f"runs: only for check 'teacher_best', this premise's check is '{self.check}'")
        if self.test == "trend" and 0 < len(self.runs) < 2:
            problems.append(f"runs: a trend needs at least two runs, got {self.runs}")
        if (self.test == "premise") != (self.family == "premises"):
            problems.append(
                f"family: 'premises' holds exactly the premise tests, this claim's test is '{self.test}'"
            )
        if self.same_blocks_note is not None and "same_blocks_note" not in CLAIM_TESTS[self.test].may:
            problems.append("same_blocks_note: only for test 'pairwise'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def labels(self) -> list[tuple[str, str]]:
        """(field, run label) for every run the claim names, for the check that each is a run."""
        named = [
            (f"pairs.{i}.{side}", getattr(p, side))
            for i, p in enumerate(self.pairs)
            for side in ("better", "worse")
        ]
        named += [("run", self.run)] if self.run else []
        return named + [(f"runs.{i}", label) for i, label in enumerate(self.runs)]

    @property
    def title(self) -> str:
        """The claim cell: 'C3 (RQ3): text', or 'B1: text' for a claim that answers no research question."""
        return f"{self.id} ({self.question}): {self.text}" if self.question else f"{self.id}: {self.text}"
