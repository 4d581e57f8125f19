"""One registry: every name an experiment or profile file may use for code (an experiment kind, an
importance criterion, a claim test), every language-model family a checkpoint may hold, and the code behind
each.

Why one place: a kind was turned into code by an if-chain in the CLI, a renderer table in the report and a
Literal in the schema, each its own list, and a criterion by an if-chain in the scoring loop. Here each name
is declared once, as `module:attribute` references imported on demand (so that `report` and `validate` never
import torch), and the schema's Literals are built from these names (harness/config/experiment.py
`Experiment.kind`, harness/config/vocabulary.py `Criterion`). harness/results.py keeps the typed model of each
kind's result file; a test checks that it covers exactly these kinds.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class Kind(NamedTuple):
    """What an experiment kind runs (recipe: experiment, profile, cache folder → its typed result model,
    harness/results.py `Result`) and what draws its result folder (renderer: folder → its table's
    Markdown)."""

    recipe: str
    renderer: str


KINDS: dict[str, Kind] = {
    "original": Kind("harness.recipes.original:run_original", "harness.report.render:render_original"),
    "compression": Kind(
        "harness.recipes.compression:run_compression_experiment", "harness.report.render:render_compression"
    ),
    "public_lmms": Kind("harness.recipes.public_lmms:run_public_lmms", "harness.report.render:render_public"),
    "pruning_curves": Kind(
        "harness.recipes.pruning_curves:run_pruning_curves", "harness.report.curves:render_curves"
    ),
}


class Criterion(NamedTuple):
    """An importance criterion: the object that scores a parameter (harness/prune/criteria.py), whether it
    needs Eq. 1's gradient over D_p (which the report counts as gradient passes, premise P3), and how the
    report names and colours it (the same colour in every figure)."""

    scorer: str
    needs_gradient: bool
    label: str
    color: str


CRITERIA: dict[str, Criterion] = {  # colours: seaborn's "deep" palette
    "first_order": Criterion("harness.prune.criteria:FirstOrder", True, "Eq. 1 (first order)", "#4C72B0"),
    "first_order_joint": Criterion(
        "harness.prune.criteria:FirstOrderJoint", True, "first order, whole structure", "#8172B3"
    ),
    "l1": Criterion("harness.prune.criteria:L1", False, "L1 magnitude", "#DD8452"),
    "l2": Criterion("harness.prune.criteria:L2", False, "L2 magnitude", "#55A868"),
    "random": Criterion("harness.prune.criteria:Random", False, "random", "#C44E52"),
}


class ClaimTest(NamedTuple):
    """How a claim's runs decide it: the evaluator (claim, experiment, result, frame → what it found;
    harness/report/claim_tests.py, harness/report/premises.py) and the claim fields it needs and may have
    (harness/config/claims.py checks them when a file is validated; a premise's `run` or `runs` depends on
    its check)."""

    evaluator: str
    needs: tuple[str, ...]
    may: tuple[str, ...] = ()


CLAIM_TESTS: dict[str, ClaimTest] = {
    "pairwise": ClaimTest("harness.report.claim_tests:pairwise", ("pairs",), ("same_blocks_note",)),
    "kept_quality": ClaimTest("harness.report.claim_tests:kept_quality", ("run",)),
    "trend": ClaimTest("harness.report.claim_tests:trend", ("runs",)),
    "premise": ClaimTest("harness.report.premises:premise", ("check", "threshold"), ("run", "runs")),
    "curve_area": ClaimTest("harness.report.claim_tests:curve_area", ("pairs",), ("level",)),
}


class Family(NamedTuple):
    """A language-model family (harness/families/base.py `Family`) and the `model_type`s of the language
    model configs it covers."""

    family: str
    model_types: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    # mistral: a pruned Llama as harness/families/llama.py saves it
    "llama": Family("harness.families.llama:FAMILY", ("llama", "mistral")),
    "qwen2": Family("harness.families.qwen2:FAMILY", ("qwen2",)),
    "opt": Family("harness.families.opt:FAMILY", ("opt",)),
    "t5": Family("harness.families.t5:FAMILY", ("t5",)),
}


def load(reference: str) -> Any:
    """The object a `module:attribute` reference names, its module imported now."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def recipe(kind: str):
    return load(KINDS[kind].recipe)


def renderer(kind: str):
    return load(KINDS[kind].renderer)


def claim_test(name: str):
    """The evaluator of a claim test."""
    return load(CLAIM_TESTS[name].evaluator)


def criterion(name: str):
    """The scorer of an importance criterion, or a ValueError naming the allowed ones."""
    if name not in CRITERIA:
        raise ValueError(f"unknown importance criterion '{name}'; allowed: {', '.join(CRITERIA)}")
    return load(CRITERIA[name].scorer)()


def language_model_types() -> tuple[str, ...]:
    """Every language-model `model_type` some family covers."""
    return tuple(t for entry in FAMILIES.values() for t in entry.model_types)


def family_name(model_type: str) -> str | None:
    """The family that covers `model_type`, or None."""
    return next((name for name, entry in FAMILIES.items() if model_type in entry.model_types), None)


def family(name: str):
    return load(FAMILIES[name].family)
