"""CONTRIBUTING.md's "Add an importance criterion", done in a fixture: a throwaway criterion registered in
harness/registry.py alone is accepted by every schema that names criteria, scores structures as the
brute-force sum of its per-parameter score, prunes a model, and is named and coloured by the report."""

import pytest
import torch

from harness import registry
from harness.curve_spec import Curve
from harness.prune.importance import importance
from harness.prune.step import prune_step
from harness.prune.structures import ffn_slices, per_structure
from harness.report.colors import color
from harness.report.curves import criterion_name
from harness.spec import CompressionRun
from tests.helpers import tiny


class Cubed:
    """|θ|³ per parameter: a criterion nobody uses, so nothing else can make this test pass."""

    needs_gradient, joint = False, False

    def score(self, p, grad):
        return p.float().abs() ** 3


@pytest.fixture
def cubed(monkeypatch):
    entry = registry.Criterion("tests.test_contributing:Cubed", False, "cubed magnitude", "#123456")
    monkeypatch.setitem(registry.CRITERIA, "cubed", entry)
    return "cubed"


def test_a_registered_criterion_goes_through_schema_compute_and_report(cubed):
    assert CompressionRun(label="mine", criterion=cubed).criterion == cubed
    assert Curve(level="ffn", criteria=[cubed, "l1"]).criteria == [cubed, "l1"]
    model, _ = tiny()
    imp = importance(model, "ffn", cubed, [], seed=0)
    layer = model.language_model.model.layers[0]
    brute = sum(
        per_structure(layer.get_parameter(s.linear_or_param).detach().abs() ** 3, s.axis)
        for s in ffn_slices(model, "language_model")
    )
    assert torch.allclose(imp[0], brute)
    before = model.config.text_config.intermediate_size
    prune_step(model, "ffn", 16, imp)
    assert model.config.text_config.intermediate_size == before - 16
    assert criterion_name(cubed) == "cubed magnitude" and color(cubed) == "#123456"


def test_an_unregistered_criterion_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown importance criterion 'cubed'; allowed: first_order"):
        CompressionRun(label="mine", criterion="cubed")
    with pytest.raises(ValueError, match="criteria: \\['cubed'\\] do not apply to level 'ffn'"):
        Curve(level="ffn", criteria=["cubed"])
