"""One registry: every kind of experiment an experiment file may name, and the code behind it.

Why one place: a kind was turned into code by an if-chain in the CLI, a renderer table in the report and a
Literal in the schema, each its own list. Here a kind is declared once, as `module:attribute` references
imported on demand (so that `report` and `validate` never import torch), and the schema's Literal is built
from these names (harness/spec.py `Experiment.kind`). harness/results.py keeps the typed model of each
kind's result file; a test checks that it covers exactly these kinds.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class Kind(NamedTuple):
    """What an experiment kind runs (recipe: experiment, profile, cache folder → result dict) and what draws
    its result folder (renderer: folder → its table's Markdown)."""

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


def load(reference: str) -> Any:
    """The object a `module:attribute` reference names, its module imported now."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def recipe(kind: str):
    return load(KINDS[kind].recipe)


def renderer(kind: str):
    return load(KINDS[kind].renderer)
