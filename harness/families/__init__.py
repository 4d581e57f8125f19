"""Language-model families: what the harness knows about one kind of language model inside BLIP-2.

`of(model)` and `of_config(text_config)` look a family up by the language model's `model_type` in
harness/registry.py `FAMILIES`. Adding a family is one module here, its registry entry, and its entry in
tests/test_families.py (CONTRIBUTING.md).
"""

from __future__ import annotations

from harness import registry
from harness.errors import PruningError
from harness.families.base import Family


def of_config(text) -> Family:
    """The family of a language model's config, or a PruningError naming the supported model types."""
    name = registry.family_name(text.model_type)
    if name is None:
        raise PruningError(
            f"language model type '{text.model_type}' is not supported; supported: "
            f"{', '.join(registry.language_model_types())}"
        )
    return registry.family(name)


def of(model) -> Family:
    """The family of a BLIP-2 model's language model."""
    return of_config(model.config.text_config)
