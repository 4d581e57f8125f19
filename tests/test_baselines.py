"""Baselines: Block Influence against its definition, removal of middle blocks, and the compute match of the
from-scratch baseline."""

import copy

import pytest
import torch
import torch.nn.functional as F

from harness.models.blip2 import blocks, lm_inputs_embeds, lm_logits
from harness.prune.importance import block_influence
from harness.prune.step import prune_step
from harness.prune.structures import PruningError
from harness.prune.surgery import prune_blocks
from harness.recipes.from_scratch import compression_compute
from tests.helpers import tiny
from tests.test_prune import _batch, _randomize


def _three_blocks():
    model, proc = tiny()
    model.language_model.model.layers.append(copy.deepcopy(model.language_model.model.layers[-1]))
    model.language_model.model.layers[-1].self_attn.layer_idx = 2
    model.config.text_config.num_hidden_layers = 3
    model.language_model.config.num_hidden_layers = 3
    _randomize(model)
    return model.eval(), proc


def test_block_influence_is_one_minus_cosine_of_block_input_and_output():
    model, proc = _three_blocks()
    b = _batch(proc, model)
    scores = block_influence(model, [b])
    with torch.no_grad():
        embeds = lm_inputs_embeds(model, b["query_output"], b["input_ids"])
        hidden = model.language_model.model(
            inputs_embeds=embeds, attention_mask=b["attention_mask"], output_hidden_states=True
        ).hidden_states
    mask = b["attention_mask"].bool()
    # hidden_states[i] is block i's input; the last entry has the final norm applied, so the last block's
    # output is read from the hook's definition on the second-to-last pair only
    for i in range(len(scores) - 1):
        expected = (1 - F.cosine_similarity(hidden[i], hidden[i + 1], dim=-1))[mask].mean()
        assert scores[i].item() == pytest.approx(expected.item(), rel=1e-4)
    assert (scores > 0).all()


def test_removing_a_middle_block_equals_skipping_it_and_generation_still_works():
    model, proc = _three_blocks()
    b = _batch(proc, model)
    skipped = copy.deepcopy(model)
    skipped.language_model.model.layers[1].register_forward_hook(
        lambda m, args, kwargs, out: args[0] if args else kwargs["hidden_states"], with_kwargs=True
    )
    prune_step(model, "block", 1, importance=torch.tensor([0.5, 0.1, 0.9]))
    assert len(blocks(model, "language_model")) == 2 and model.config.text_config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in model.language_model.model.layers] == [0, 1]
    with torch.no_grad():
        torch.testing.assert_close(
            lm_logits(model, b["query_output"], b["input_ids"], b["attention_mask"]),
            lm_logits(skipped, b["query_output"], b["input_ids"], b["attention_mask"]),
        )
    out = model.generate(
        pixel_values=b.get("pixel_values", torch.zeros(4, 3, 32, 32)),
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        max_new_tokens=3,
    )
    assert out.shape[1] == b["input_ids"].shape[1] + 3


@pytest.mark.parametrize("identity", [0, 1, 2])
def test_block_influence_drops_the_block_that_does_nothing(identity):
    """Known answer: a block whose attention output and MLP down projections are zero adds nothing to the
    residual stream (output = input, influence 0), so Block Influence must rank it lowest and drop it, and
    prune_step must report its index; dropping the last block instead would report index 2."""
    model, proc = _three_blocks()
    layer = model.language_model.model.layers[identity]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    scores = block_influence(model, [_batch(proc, model)])
    assert scores[identity].item() == pytest.approx(0.0, abs=1e-6) and scores.argmin().item() == identity
    assert prune_step(copy.deepcopy(model), "block", 1, scores)["blocks"] == [identity]
    assert prune_step(copy.deepcopy(model), "block", 1)["blocks"] == [2]


def test_bad_block_indices_are_refused():
    model, _ = _three_blocks()
    with pytest.raises(PruningError, match="distinct indices below 3"):
        prune_blocks(model, 2, remove=[1, 1])


def test_scratch_compute_counts_importance_before_and_distillation_after_each_step():
    trace = [{"stage": "block", "params_lm": 80}, {"stage": "ffn", "params_lm": 50}]
    # block: no importance pass, 2 epochs × 10 samples at 80
    # ffn: importance over 4 samples at 80, then 2 epochs × 10 samples at 50
    assert compression_compute(trace, 100, d_d=10, d_p=4, epochs=2) == 80 * 20 + 80 * 4 + 50 * 20


@pytest.mark.parametrize("level, amount", [("ffn", 32), ("hidden", 16)])
def test_torch_pruning_peer_prunes_every_coupled_layer_and_round_trips(tmp_path, level, amount):
    from transformers import Blip2ForConditionalGeneration

    from harness.prune.torch_pruning_baseline import torch_pruning_step

    model, proc = tiny()
    _randomize(model)
    b = _batch(proc, model, with_queries=False)
    example = {k: b[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    before = {
        "ffn": model.config.text_config.intermediate_size,
        "hidden": model.config.text_config.hidden_size,
    }
    torch_pruning_step(model, level, amount, example)
    text = model.config.text_config
    after = {"ffn": text.intermediate_size, "hidden": text.hidden_size}
    assert after[level] == before[level] - amount
    layer = model.language_model.model.layers[0]
    assert layer.mlp.down_proj.weight.shape == (text.hidden_size, text.intermediate_size)
    assert model.language_projection.weight.shape[0] == text.hidden_size
    model.save_pretrained(tmp_path)
    again = Blip2ForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**example).logits, model(**example).logits)


def test_torch_pruning_refuses_what_it_does_not_prune():
    from harness.prune.torch_pruning_baseline import torch_pruning_step

    model, _ = tiny()
    with pytest.raises(PruningError, match="'ffn' and 'hidden' only"):
        torch_pruning_step(model, "attention", 16, {})
