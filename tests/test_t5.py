"""BLIP-2-Flan-T5 language models (harness/families/t5.py, harness/models/blip2.py `_t5_logits`): every level
maps onto T5Config, removing zeroed structures leaves the logits unchanged, Eq. 1 sums what brute force sums,
and evaluation's one forced pass decides as greedy generation does. tests/test_families.py reloads every
pruned checkpoint with the stock class; tests/test_public.py compresses a T5 with Algorithm 1."""

import pytest
import torch
from transformers import Blip2ForConditionalGeneration

from harness.cli import main
from harness.distill.loop import distill
from harness.evaluate import evaluate, forced_verdicts, generate_answers, max_answer_tokens, normalize
from harness.families import t5
from harness.models.public import load_model
from harness.objectives import teacher_batches
from harness.prune.importance import accumulate_gradients, importance, structure_importance
from harness.prune.step import prune_step, structures_to_remove
from harness.prune.structures import PruningError
from tests.helpers import tiny
from tests.test_families import _logits, split  # noqa: F401 (fixture)
from tests.test_public import blip2_t5


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from harness.config.loading import load_profile
    from harness.models.stand_in import new_model
    from harness.store import get_dataset

    root = tmp_path_factory.mktemp("t5")
    prof = load_profile("smoke")
    data = get_dataset(prof, root / "cache", progress=False)
    _, processor = new_model(prof, data)  # a processor fitted on SynthAd, whose answers it can spell
    return prof, data, processor, root


@pytest.fixture
def flan(tmp_path):
    _, processor = tiny()
    return load_model(blip2_t5(processor, tmp_path / "base")), processor


@pytest.mark.parametrize("gated", [True, False])
def test_removing_zeroed_structures_leaves_logits_unchanged(gated, split, tmp_path):  # noqa: F811
    _, proc = tiny()
    model = load_model(blip2_t5(proc, tmp_path / "base", gated))
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
    prune_step(model, "block", 1)
    enc, dec = t5.stack_blocks(model)
    assert len(enc) == len(dec) == 1 == model.config.text_config.num_layers
    assert model.config.text_config.num_decoder_layers == 1
    with pytest.raises(PruningError, match="cannot remove 1 from language_model, which has 1"):
        structures_to_remove(model, "block", 1)


def test_self_attentions_of_a_stack_keep_one_set_of_heads(flan):
    """The position bias of a stack's first block serves every block, head by head."""
    model, _ = flan
    scores = importance(model, "attention", "random", [], seed=0)
    assert scores.shape == (2 + 2, 4)  # encoder self, decoder self, then each decoder cross-attention
    prune_step(model, "attention", 16, scores)
    bias = model.language_model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    assert bias.weight.shape == (32, 2) and model.config.text_config.num_heads == 2


def test_prune_command_on_a_flan_t5_checkpoint(tmp_path):
    _, proc = tiny()
    folder = blip2_t5(proc, tmp_path / "flan")
    common = ["prune", "--profile", "smoke", "--cache-dir", str(tmp_path / "cache"), "--checkpoint"]
    common += [str(folder), "--level", "ffn", "--amount", "16", "--samples", "64", "--quiet"]
    for criterion in ("l1", "first_order"):
        assert main([*common, "--criterion", criterion, "--out", str(tmp_path / criterion)]) == 0
        assert (
            Blip2ForConditionalGeneration.from_pretrained(tmp_path / criterion).config.text_config.d_ff == 32
        )


def test_eq1_on_a_t5_sums_what_brute_force_sums(smoke):
    """Eq. 2 per FFN channel and Eq. 3 per head, from the gradients of the answers' cross-entropy."""
    _, data, processor, root = smoke
    model = load_model(blip2_t5(processor, root / "eq1"))
    batches = teacher_batches(model, processor, data["train"].select(range(32)), 16)
    accumulate_gradients(model, batches)
    g = {n: (p.grad * p).abs() for n, p in model.named_parameters() if p.grad is not None}
    ffn = structure_importance(model, "ffn", "first_order")
    lm = "language_model.decoder.block.1.layer.2.DenseReluDense"
    c = 5
    brute = (
        g[f"{lm}.wi_0.weight"][c].sum() + g[f"{lm}.wi_1.weight"][c].sum() + g[f"{lm}.wo.weight"][:, c].sum()
    )
    assert ffn[3, c].item() == pytest.approx(brute.item(), rel=1e-5)  # encoder blocks 0, 1, then decoder
    heads = structure_importance(model, "attention", "first_order")
    enc = "language_model.encoder.block"
    h = slice(2 * 8, 3 * 8)
    brute = sum(
        g[f"{enc}.{b}.layer.0.SelfAttention.{w}.weight"][h].sum() for b in (0, 1) for w in "qkv"
    ) + sum(g[f"{enc}.{b}.layer.0.SelfAttention.o.weight"][:, h].sum() for b in (0, 1))
    brute += g[f"{enc}.0.layer.0.SelfAttention.relative_attention_bias.weight"][:, 2].sum()
    assert heads[0, 2].item() == pytest.approx(brute.item(), rel=1e-5)


def test_evaluation_decides_as_greedy_generation_does_and_distillation_learns(smoke):
    """A tiny T5 distilled (answers' cross-entropy) on 50 samples until it answers some of them: the forced
    pass's verdicts, where it decides, are generation's, and evaluate's are generation's."""
    _, data, processor, root = smoke
    model = load_model(blip2_t5(processor, root / "eval"))
    seen = data["train"].select(range(50))
    batches = teacher_batches(model, processor, seen, 25)
    losses = distill(model, batches, 40, 1e-2, "label_ce", 0.0, seed=0)
    assert losses[-1] < 0.5 * losses[0]
    images, questions, answers = (list(seen[c]) for c in ("image", "question", "answer"))
    generated = generate_answers(model, processor, images, questions, max_answer_tokens(processor, answers))
    by_generation = [normalize(p) == normalize(a) for p, a in zip(generated, answers, strict=True)]
    forced = forced_verdicts(model, processor, images, questions, answers, batch_size=25)
    assert all(f == g for f, g in zip(forced, by_generation, strict=True) if f is not None)
    assert True in forced and any(by_generation)
    assert evaluate(model, processor, seen, 25)["correct"] == by_generation
