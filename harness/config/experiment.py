"""The experiment schema: what an experiment file may say, each field with what is allowed.

Why strict: a typo in a YAML key or an impossible step size must fail before any minute of compute is
spent, with a message that names the file, the field and what is allowed. Every model forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from harness.config.claims import Claim
from harness.config.compression import Compression
from harness.config.curves import Curve
from harness.config.schema import Strict
from harness.config.vocabulary import STAGE_NAMES, TASKS, Criterion, StageName, Variant
from harness.registry import KINDS

STAGE_ORDER = list(STAGE_NAMES)


def _check_stage_order(stages: list[str]) -> None:
    if len(set(stages)) != len(stages) or stages != sorted(stages, key=STAGE_ORDER.index):
        raise ValueError(f"stages: each stage at most once, in the order {STAGE_ORDER}; got {stages}")


# one row of a paper table, transcribed as reference (None where the paper gives no value); one field per
# task of harness/config/vocabulary.py
PaperRow = create_model(
    "PaperRow",
    __base__=Strict,
    row=(str, ...),
    size_b=(float | None, None),
    a10_samples_per_s=(float | None, None),
    **{t: (float | None, None) for t in TASKS},
    overall=(float | None, None),
)


SCRATCH_FIELDS = ("scratch_structure", "scratch_recipe")


class CompressionRun(Strict):
    """One variant of Algorithm 1, computed once per seed and shared by every experiment that names it."""

    label: str = Field(min_length=1, description="the row's name in tables and figures")
    stages: list[StageName] = Field(default=list(STAGE_NAMES), min_length=1)
    mode: Literal["iterative", "one_shot", "scratch"] = Field(
        "iterative",
        description="scratch: the iterative run's final structure trained from scratch (baseline)",
    )
    criterion: Criterion = Field(
        "first_order",
        description="first_order: Eq. 1 summed per structure (Eq. 2–4); first_order_joint: |Σ ∂L/∂θ·θ| over "
        "the structure, the first-order change when its parameters shrink together (baseline)",
    )
    block_criterion: Literal["last", "block_influence"] = Field(
        "last", description="which blocks the block stage drops: the last (paper) or lowest Block Influence"
    )
    pruner: Literal["harness", "torch_pruning"] = Field(
        "harness", description="torch_pruning: FFN channels and hidden dims by Torch-Pruning (baseline)"
    )
    variant: Variant = "eq5"
    data_fraction: float = Field(
        1.0, gt=0, le=1, description="share of the training split used as D_d and D_p (RQ2)"
    )
    target_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="single-level runs (Table 3): prune until the language model's transformer blocks have "
        "at most this share of the teacher's parameters there (as the paper's sizes count), or as far as the "
        "level allows; the level's maximum is then the fewest whole "
        "steps that reach it, and α does not stop the run (the paper's single-level rows went far past α)",
    )
    epochs: float | None = Field(
        None,
        ge=0,
        description="E for this run, distillation epochs over D_d after each pruning step (the distillation-"
        "budget map); None: the profile's compression.epochs",
    )
    one_shot_budget: Literal["iterative_total", "per_step"] = Field(
        "iterative_total",
        description="one-shot's distillation: iterative_total: as many epochs as the iterative run it "
        "follows used in all (compute-fair); per_step: E once, as Algorithm 1 reads for one pruning step",
    )
    scratch_structure: Literal["final", "teacher"] = Field(
        "final",
        description="mode scratch: the structure trained, the matching iterative run's final one or the "
        "teacher's own (premise P5: does the teacher's architecture learn more from D_d alone?)",
    )
    scratch_recipe: Literal["d_d", "teacher"] = Field(
        "d_d",
        description="mode scratch: d_d: the teacher's recipe on D_d alone (no pretraining, no replay) with "
        "at least the compression run's compute; teacher: the teacher's whole recipe, pretraining and "
        "replay included, at its own epochs (premise P4: can the final structure hold what the teacher "
        "knows?)",
    )
    paper: PaperRow | None = Field(None, description="the paper's values for this row, if it has one")

    @model_validator(mode="after")
    def _order(self) -> CompressionRun:
        _check_stage_order(self.stages)
        for name in SCRATCH_FIELDS:
            if getattr(self, name) != type(self).model_fields[name].default and self.mode != "scratch":
                raise ValueError(f"{name}: only for mode 'scratch', this run's mode is '{self.mode}'")
        if self.one_shot_budget != "iterative_total" and self.mode != "one_shot":
            raise ValueError(f"one_shot_budget: only for mode 'one_shot', this run's mode is '{self.mode}'")
        if self.target_share is not None and len(self.stages) != 1:
            raise ValueError(
                f"target_share: only for a single-level run (one stage), got stages {self.stages} (a "
                "multi-stage run reaches its size through each stage's maximum)"
            )
        return self

    def epochs_under(self, compression: Compression) -> float:
        """E of this run: its own (the distillation-budget map) or the profile's."""
        return compression.epochs if self.epochs is None else self.epochs

    def determining(self) -> dict:
        """What determines the run's numbers: every field but its label and paper values. Both the spec hash
        (harness/results.py) and the run's cache key (harness/store.py) are built from it."""
        return self.model_dump(mode="json", exclude={"label", "paper"})


class RunPlan(BaseModel):
    """Everything `run_compression` needs, typed: the run variant, the profile's compression section, the
    seed, the batch size of its evaluations, each stage's maximum reduction in the paper's units (the
    iterative run's stopping point and one-shot's target), whether α may stop a stage (not for a run pruned
    to a target size) and one-shot's epoch budget (E × the iterative run's steps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: CompressionRun
    compression: Compression
    seed: int
    eval_batch_size: int
    maxima: dict[str, int]
    use_alpha: bool
    epochs: float
    total_epochs: float


class PublicModel(Strict):
    """One row group of the public-LMM comparison: a BLIP-2-family checkpoint, optionally fine-tuned on the
    training split and compressed with Algorithm 1."""

    name: str = Field(min_length=1)
    checkpoint: str = Field(
        description="a save_pretrained folder, a hub id (with allow_download), 'teacher' (the profile's) or "
        "'compressed' (the full multi-stage run of the teacher, first seed)"
    )
    allow_download: bool = False
    fine_tune_epochs: int = Field(0, ge=0, description="generative fine-tuning epochs on the training split")
    fine_tune_lr: float = Field(1e-4, gt=0, lt=1)
    compress: bool = Field(False, description="run Algorithm 1 on it (after fine-tuning, if any)")
    stages: list[StageName] | None = Field(
        None, description="default: every stage its language model supports (OPT: block, ffn)"
    )
    compression: dict[str, Any] = Field(
        default_factory=dict,
        description="fields of the profile's compression section to change for this model",
    )
    prompt: str | None = Field(
        None,
        description="the prompt around each question, with one {question}; default: BLIP-2's "
        "'Question: {question} Answer:' for a checkpoint, the stand-in's own for 'teacher' and 'compressed'",
    )

    @model_validator(mode="after")
    def _prompt(self) -> PublicModel:
        if self.prompt is None:
            return self
        try:
            ok = self.prompt.format(question="\x00").count("\x00") == 1
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"prompt: must hold {{question}} once and no other {{...}} field, got {self.prompt!r}"
            )
        return self

    @model_validator(mode="after")
    def _stages(self) -> PublicModel:
        if self.stages is not None:
            _check_stage_order(self.stages)
        return self


class Experiment(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    reproduces: str = Field(min_length=3, description="the paper table or figure this experiment regenerates")
    kind: Literal[tuple(KINDS)]  # harness/registry.py
    description: str
    include: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = Field(
        default=[],
        description="experiments (file names in this folder) whose runs and paper rows come first, before "
        "this file's own, as lm-evaluation-harness tasks include others; resolved by load_experiment",
    )
    paper: list[PaperRow] = Field(default=[], description="paper rows shown beside ours as a whole")
    runs: list[CompressionRun] = Field(default=[], description="for kind 'compression': one row each")
    models: list[PublicModel] = Field(default=[], description="for kind 'public_lmms': the checkpoints")
    curves: list[Curve] = Field(default=[], description="for kind 'pruning_curves': levels and criteria")
    table: Literal["runs", "stages", "budgets"] = Field(
        "runs",
        description="one row per run, (Table 2) one row per stage end of the first run, or one row per "
        "distillation budget (runs differing in epochs and mode, harness/report/budget.py)",
    )
    figures: list[Literal["trace", "bars", "sample_size", "tradeoff", "curves", "budget"]] = Field(
        default=[],
        description="trace: Figures 6/10/11; bars: accuracy per run (Figure 8); sample_size: Figure 7; "
        "tradeoff: accuracy and throughput against size; curves: accuracy against share removed, no "
        "recovery; budget: final accuracy against distillation steps per pruning step",
    )
    measure: bool = Field(True, description="measure throughput of every row (interleaved with the teacher)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="deep-merged into the profile")
    claims: list[Claim] = Field(default=[], description="the paper's claims these runs test (claims.md)")
    replicates: list[Annotated[str, Field(pattern=r"^[A-Z][0-9]+[a-z]?$")]] = Field(
        default=[],
        description="claims of other experiments (ids) that this experiment's runs test again, on the "
        "teacher its overrides give (teacher.seed): claims.md shows each one's verdict per teacher "
        "(harness/report/claims.py); runs are matched to the claim's by label",
    )

    @model_validator(mode="after")
    def _runs(self) -> Experiment:
        if self.kind == "compression" and not self.runs:
            raise ValueError("runs: kind 'compression' needs at least one run (label, stages, mode, ...)")
        if self.kind == "public_lmms" and not self.models:
            raise ValueError("models: kind 'public_lmms' needs at least one model (name, checkpoint)")
        if self.kind == "pruning_curves" and not self.curves:
            raise ValueError("curves: kind 'pruning_curves' needs at least one curve (level, criteria)")
        levels = [c.level for c in self.curves]
        if len(set(levels)) != len(levels):
            raise ValueError(f"curves: each level at most once, got {levels}")
        labels = [r.label for r in self.runs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"runs: labels must be unique, got {labels}")
        if any(r.pruner == "torch_pruning" and r.mode == "one_shot" for r in self.runs):
            raise ValueError("runs: the Torch-Pruning baseline is wired for iterative runs only")
        if self.replicates and self.kind != "compression":
            raise ValueError(
                f"replicates: only for kind 'compression', this experiment's kind is '{self.kind}'"
            )
        if len(set(self.replicates)) != len(self.replicates):
            raise ValueError(f"replicates: each claim at most once, got {self.replicates}")
        if self.table == "stages" and self.runs and self.runs[0].mode != "iterative":
            raise ValueError("table: 'stages' needs an iterative first run (one-shot has no stage ends)")
        return self

    @model_validator(mode="after")
    def _claims(self) -> Experiment:
        """Every run a claim names is a run of this experiment: a renamed run fails here, not in a report."""
        if self.claims and self.kind not in ("compression", "pruning_curves"):
            raise ValueError(
                f"claims: only for kinds 'compression' and 'pruning_curves', this experiment's kind is "
                f"'{self.kind}'"
            )
        ids = [c.id for c in self.claims]
        if len(set(ids)) != len(ids):
            raise ValueError(f"claims: ids must be unique, got {ids}")
        if self.kind == "pruning_curves":
            return self._curve_claims()
        runs = {r.label: r for r in self.runs}
        problems = []
        for i, claim in enumerate(self.claims):
            problems += [
                f"claims.{i}.{field}: '{label}' is not a run of this experiment (runs: {', '.join(runs)})"
                for field, label in claim.labels()
                if label not in runs
            ]
            if claim.test == "kept_quality" and (self.table != "stages" or claim.run != self.runs[0].label):
                problems.append(
                    f"claims.{i}.run: kept_quality follows the stage ends of the first run, measured only "
                    "with table: stages"
                )
            fractions = [runs[lb].data_fraction for lb in claim.runs if lb in runs and claim.test == "trend"]
            if any(a >= b for a, b in zip(fractions, fractions[1:], strict=False)):
                problems.append(f"claims.{i}.runs: list the runs by growing data_fraction, got {fractions}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _curve_claims(self) -> Experiment:
        """A pruning-curves claim compares two criteria at one level: both must be curves of it."""
        followed = {c.level: c.criteria for c in self.curves}
        problems = []
        for i, claim in enumerate(self.claims):
            if claim.test != "curve_area":
                problems.append(f"claims.{i}.test: a pruning-curves experiment has only 'curve_area' claims")
                continue
            levels = [claim.level] if claim.level else list(followed)
            known = {c for level in levels for c in followed.get(level, [])}
            where = f"level '{claim.level}'" if claim.level else "any level"
            problems += [
                f"claims.{i}.{field}: '{name}' is not a criterion of {where} here (criteria: "
                f"{', '.join(sorted(known))})"
                for field, name in claim.labels()
                if name not in known
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
