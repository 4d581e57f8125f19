"""CONTRIBUTING.md's recipes done in fixtures: a throwaway importance criterion, a throwaway claim test and a
throwaway language-model family, each registered in harness/registry.py alone, go through the schemas, the
compute and the report (or, for the family, refusal, pruning and a saved round trip)."""

import dataclasses

import pytest
import torch

from harness import registry
from harness.config.curves import Curve
from harness.config.experiment import CompressionRun
from harness.families.base import per_structure
from harness.families.llama import FAMILY as LLAMA
from harness.prune.importance import importance
from harness.prune.step import prune_step
from harness.prune.structures import ffn_slices
from harness.report.colors import color
from harness.report.curves import criterion_name
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


def beats_chance(claim, exp, res, frame):
    """A throwaway claim test: the run's first seed answers more than a fifth of the test samples."""
    from harness.report.claim_tests import Found
    from harness.report.vectors import run_vectors

    acc = float(run_vectors(res, claim.run)[0].mean())
    return Found(
        f"{claim.run} {acc:.3f} vs chance 0.2", verdict="reproduced" if acc > 0.2 else "not reproduced"
    )


def test_a_registered_claim_test_is_validated_and_decides_its_row(monkeypatch, tmp_path):
    """CONTRIBUTING.md's "Add a claim": a test registered in harness/registry.py alone (its evaluator and the
    fields it needs) is checked by the claim schema and decides its claims.md row."""
    from harness.config.claims import Claim
    from harness.config.loading import load_experiment
    from harness.report.claims import claim_rows
    from harness.report.frame import load_results
    from tests.test_claim_rules import _bits, _compression, _seeds

    with pytest.raises(ValueError, match="unknown claim test 'beats_chance'"):
        Claim(id="X1", text="beats chance", test="beats_chance", family="baselines", run="All stages")
    entry = registry.ClaimTest("tests.test_contributing:beats_chance", ("run",))
    monkeypatch.setitem(registry.CLAIM_TESTS, "beats_chance", entry)
    with pytest.raises(ValueError, match="run: test 'beats_chance' needs it"):
        Claim(id="X1", text="beats chance", test="beats_chance", family="baselines")
    claim = Claim(id="X1", text="beats chance", test="beats_chance", family="baselines", run="All stages")
    exp = load_experiment("rq5_hard_label").model_copy(update={"claims": [claim]})
    _compression(tmp_path, "rq5_hard_label", {"All stages": _seeds([_bits(0.6, "x1")])})
    (row,) = claim_rows(load_results(tmp_path), [exp])
    assert (row["id"], row["verdict"], row["ours"]) == ("X1", "holds", "All stages 0.600 vs chance 0.2")


# a family nobody ships: Llama's layout under another name that cannot express hidden pruning, covering the
# model type "llama" in place of the real family (so the tiny model below is of this family alone)
STUB = dataclasses.replace(
    LLAMA, name="stub", refusals={"hidden": "hidden-dimension pruning of a stub language model is refused"}
)


def test_a_registered_family_is_refused_pruned_and_saved_by_its_own_rules(monkeypatch, tmp_path):
    from harness import families
    from harness.models.public import load_model, save_lmm
    from harness.pipeline import structure
    from harness.prune.step import prune_step
    from harness.prune.structures import PruningError, default_stages

    entries = {"stub": registry.Family("tests.test_contributing:STUB", ("llama",))}
    monkeypatch.setattr(registry, "FAMILIES", entries)
    model, proc = tiny()
    assert families.of(model) is STUB
    assert default_stages(model) == ["block", "ffn", "attention"]
    with pytest.raises(PruningError, match="hidden-dimension pruning of a stub language model is refused"):
        prune_step(model, "hidden", 4, torch.rand(model.config.text_config.hidden_size))
    width = model.config.text_config.intermediate_size
    prune_step(model, "ffn", 16, importance(model, "ffn", "l1", [], seed=0))
    assert structure(model)["intermediate_size"] == width - 16
    save_lmm(model, proc, tmp_path)
    reloaded = load_model(tmp_path)
    assert reloaded.config.text_config.intermediate_size == width - 16
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
