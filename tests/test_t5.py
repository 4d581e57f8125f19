"""BLIP-2-Flan-T5 language models (harness/prune/t5.py): every level maps onto T5Config and removing zeroed
structures leaves the logits unchanged; tests/test_families.py reloads every pruned checkpoint with the stock
class. Evaluation and distillation of encoder-decoder models are refused with the reason."""

import pytest
import torch
from transformers import Blip2ForConditionalGeneration

from harness.cli import main
from harness.models.public import CheckpointError, load_lmm, load_model
from harness.prune import t5
from harness.prune.importance import importance
from harness.prune.step import prune_step, structures_to_remove
from harness.prune.structures import PruningError
from tests.helpers import tiny
from tests.test_families import _logits, split  # noqa: F401 (fixture)
from tests.test_public import blip2_t5

AMOUNTS = {"block": [1, 2], "ffn": [8, 40], "attention": [8, 16, 24], "hidden": [4, 7, 12]}


@pytest.fixture
def flan(tmp_path):
    _, processor = tiny()
    return load_model(blip2_t5(processor, tmp_path / "base"), prune_only=True), processor


@pytest.mark.parametrize("gated", [True, False])
def test_removing_zeroed_structures_leaves_logits_unchanged(gated, split, tmp_path):  # noqa: F811
    _, proc = tiny()
    model = load_model(blip2_t5(proc, tmp_path / "base", gated), prune_only=True)
    drop_ffn, head, dims = [1, 7, 30], 2, [3, 10, 31]
    lm = model.language_model
    with torch.no_grad():
        for ff in t5.feed_forwards(model):
            for lin in [ff.wi_0, ff.wi_1] if gated else [ff.wi]:
                lin.weight[drop_ffn] = 0
            ff.wo.weight[:, drop_ffn] = 0
        inner = slice(head * 8, (head + 1) * 8)
        for row in t5.attention_rows(model):
            for attn in row:
                attn.v.weight[inner] = 0  # the head adds nothing to its output, whatever it attends to
                attn.o.weight[:, inner] = 0
        # hidden dims: everything that writes to the residual stream there is zero
        lm.shared.weight[:, dims] = 0
        for owner, name, axis in t5.hidden_parts(model):
            if axis == 0 and owner is not model.language_projection:
                getattr(owner, name)[dims] = 0
        model.language_projection.weight[dims] = 0
        model.language_projection.bias[dims] = 0
    before = _logits(model, proc, split)
    keep = lambda n, drop, rows: torch.tensor([i for i in range(n) if i not in drop]).repeat(rows, 1)  # noqa: E731
    t5.prune_ffn(model, keep(48, drop_ffn, len(t5.feed_forwards(model))))
    t5.prune_attention(model, keep(4, [head], len(t5.attention_rows(model))))
    t5.prune_hidden(model, keep(32, dims, 1)[0])
    after = _logits(model, proc, split)
    assert (after - before).abs().max().item() <= 1e-4
    cfg = model.config.text_config
    assert (cfg.d_ff, cfg.num_heads, cfg.d_model) == (45, 3, 29)


def test_block_pruning_shortens_both_stacks(flan):
    model, _ = flan
    prune_step(model, "block", 2)
    enc, dec = t5.stack_blocks(model)
    assert len(enc) == len(dec) == 1 == model.config.text_config.num_layers
    assert model.config.text_config.num_decoder_layers == 1
    with pytest.raises(PruningError, match="cannot remove 1 from language_model, which has 1"):
        structures_to_remove(model, "block", 1)


def test_self_attentions_of_a_stack_keep_one_set_of_heads(flan):
    """The position bias of a stack's first block serves every block, head by head."""
    model, _ = flan
    scores = importance(model, "attention", "random", [], seed=0)
    assert scores.shape == (2 + 3, 4)  # encoder self, decoder self, then each decoder cross-attention
    prune_step(model, "attention", 16, scores)
    bias = model.language_model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    assert bias.weight.shape == (32, 2) and model.config.text_config.num_heads == 2


def test_prune_command_on_a_flan_t5_checkpoint(tmp_path, capsys):
    _, proc = tiny()
    folder = blip2_t5(proc, tmp_path / "flan")
    common = [
        "prune",
        "--profile",
        "smoke",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--checkpoint",
        str(folder),
    ]
    common += ["--level", "ffn", "--amount", "16", "--quiet"]
    assert main([*common, "--criterion", "l1", "--out", str(tmp_path / "pruned")]) == 0
    assert Blip2ForConditionalGeneration.from_pretrained(tmp_path / "pruned").config.text_config.d_ff == 32
    code = main([*common, "--out", str(tmp_path / "no")])  # first_order, the default
    assert code == 2 and "criterion 'first_order' needs the loss" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_evaluation_of_a_flan_t5_is_refused_with_the_reason(tmp_path):
    _, proc = tiny()
    folder = blip2_t5(proc, tmp_path / "flan")
    with pytest.raises(CheckpointError, match="encoder-decoder.*`python -m harness prune` prunes a T5"):
        load_lmm(folder)
