"""Every language-model family the harness prunes, at every level it allows and several amounts, saved and
read back: the reloaded checkpoint computes the pruned model's logits exactly (issue 16's property test).

Families: Llama with multi-head, grouped-query and multi-query attention, Qwen2 with and without an
explicit head_dim, OPT (blocks and FFN only: it derives head_dim), InstructBLIP-Vicuna (Llama), a Llama
with attention and MLP biases, and BLIP-2-Flan-T5 (harness/families/t5.py). Stock `from_pretrained` reads
every result: a Llama whose hidden size is no longer a multiple of its heads, which LlamaConfig in
transformers 5 refuses, is saved as the identical Mistral (harness/families/llama.py `Llama.saved_config`);
where biases rule Mistral out, the step is refused before it runs (harness/prune/step.py).
"""

import copy

import pytest
import torch
from transformers import LlamaConfig, Qwen2Config

from harness.models.public import CLASSES, load_model, save_lmm
from harness.prune.importance import importance
from harness.prune.step import level_width, prune_step, structures_to_remove
from harness.prune.structures import PruningError, default_stages
from tests.helpers import tiny
from tests.test_public import _blip2, _logits, _special, blip2_opt, blip2_qwen2, blip2_t5, instructblip_llama


def _tiny_lm(config_class, **fields):
    """A builder of a tiny BLIP-2 around `config_class` at test_public.py's sizes, with `fields`."""

    def build(processor, folder):
        tok = processor.tokenizer
        text = config_class(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
            **fields,
            **_special(tok),
        )
        return _blip2(processor, folder, text.to_dict())

    return build


FAMILIES = {
    "llama_mha": _tiny_lm(LlamaConfig, num_key_value_heads=4, head_dim=8),
    "llama_gqa": _tiny_lm(LlamaConfig, num_key_value_heads=2, head_dim=8),
    "llama_mqa": _tiny_lm(LlamaConfig, num_key_value_heads=1, head_dim=8),
    "qwen2_head_dim": _tiny_lm(Qwen2Config, num_key_value_heads=2, head_dim=8),
    "qwen2_derived_head_dim": blip2_qwen2,
    "opt": blip2_opt,
    "instructblip_vicuna": instructblip_llama,
    "flan_t5": blip2_t5,
    "llama_biased": _tiny_lm(
        LlamaConfig, num_key_value_heads=4, head_dim=8, attention_bias=True, mlp_bias=True
    ),
}
# amounts tried per level, in the paper's units; those the validator refuses are skipped (and counted)
AMOUNTS = {"block": [1], "ffn": [8, 40], "attention": [8, 16, 24], "hidden": [4, 6, 12]}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from harness.config.loading import load_profile
    from harness.store import get_dataset

    data = get_dataset(load_profile("smoke"), tmp_path_factory.mktemp("cache"), progress=False)
    return data["validation"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_allowed_step_of_every_family_reloads_to_the_same_logits(family, split, tmp_path):
    _, processor = tiny()
    base = load_model(FAMILIES[family](processor, tmp_path / "base"))
    proc = processor
    if family == "instructblip_vicuna":
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(tmp_path / "base")
        proc.num_query_tokens = base.config.num_query_tokens
    tried = 0
    for level in default_stages(base):
        for amount in AMOUNTS[level]:
            model = copy.deepcopy(base)
            try:
                structures_to_remove(model, level, amount)
            except PruningError:
                continue
            assert amount < level_width(base, level)
            scores = None if level == "block" else importance(model, level, "random", [], seed=amount)
            prune_step(model, level, amount, scores)
            folder = tmp_path / f"{level}-{amount}"
            save_lmm(model, proc, folder)
            expected = _logits(model, proc, split)
            assert torch.equal(_logits(load_model(folder), proc, split), expected), (
                level,
                amount,
            )
            text = model.config.text_config
            stock = CLASSES[model.config.model_type].from_pretrained(folder).eval()
            assert torch.equal(_logits(stock, proc, split), expected), (level, amount)
            indivisible = text.hidden_size % text.num_attention_heads != 0
            saved_as = stock.config.text_config.model_type
            assert saved_as == ("mistral" if indivisible and text.model_type == "llama" else text.model_type)
            tried += 1
    assert tried >= len(default_stages(base))  # at least one amount of every level ran


def test_a_llama_saved_as_mistral_prunes_and_saves_again(split, tmp_path):
    _, processor = tiny()
    model = load_model(FAMILIES["llama_mha"](processor, tmp_path / "base"))
    prune_step(model, "attention", 8, importance(model, "attention", "random", [], seed=0))  # 3 heads of 32
    save_lmm(model, processor, tmp_path / "one")
    again = load_model(tmp_path / "one")
    assert again.config.text_config.model_type == "mistral"
    prune_step(again, "hidden", 5, importance(again, "hidden", "random", [], seed=0))
    save_lmm(again, processor, tmp_path / "two")
    stock = CLASSES["blip-2"].from_pretrained(tmp_path / "two").eval()
    assert torch.equal(_logits(stock, processor, split), _logits(again, processor, split))


def test_a_biased_llama_refuses_steps_stock_transformers_could_not_load(tmp_path):
    _, processor = tiny()
    model = load_model(FAMILIES["llama_biased"](processor, tmp_path / "base"))
    with pytest.raises(PruningError, match="3 heads over a hidden size of 32.*attention_bias"):
        structures_to_remove(model, "attention", 8)
    with pytest.raises(PruningError, match="4 heads over a hidden size of 26"):
        structures_to_remove(model, "hidden", 6)
    assert structures_to_remove(model, "attention", 16) == 2 and structures_to_remove(model, "hidden", 4) == 4
