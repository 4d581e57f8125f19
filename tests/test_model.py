"""The BLIP-2 stand-in: standard checkpoints, the cached-query path equals the full forward."""

import pytest
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration

from harness.config.loading import load_profile
from harness.data.collate import pixel_values, training_batch
from harness.models.blip2 import build_config, lm_logits, parameter_counts, query_outputs
from tests.helpers import tiny


def _inputs(proc, n=3):
    images = [Image.new("RGB", (32, 32), (40 * i, 100, 200 - 30 * i)) for i in range(n)]
    batch = training_batch(
        proc, ["What is the background color of this ad?"] * n, ["red", "blue", "none"][:n]
    )
    return pixel_values(proc, images), batch


@pytest.mark.parametrize("family, tie", [("llama", False), ("llama", True), ("qwen2", False)])
def test_cached_query_path_equals_full_forward(family, tie):
    model, proc = tiny(family, tie)
    pixels, b = _inputs(proc)
    with torch.no_grad():
        full = model(pixel_values=pixels, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        cached = lm_logits(model, query_outputs(model, pixels), b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family, tie", [("llama", False), ("llama", True), ("qwen2", False)])
def test_save_load_gives_identical_logits(tmp_path, family, tie):
    model, proc = tiny(family, tie)
    pixels, b = _inputs(proc)
    model.save_pretrained(tmp_path)
    again = Blip2ForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        a = model(pixel_values=pixels, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        c = again(pixel_values=pixels, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.equal(a, c)
    assert again.config.text_config.head_dim == model.config.text_config.head_dim
    assert parameter_counts(again) == parameter_counts(model)


def test_cpu_profile_language_model_holds_most_parameters():
    prof = load_profile("cpu")
    config = build_config(prof.model, prof.teacher.vocab_size, 3, {"bos": 1, "eos": 2, "pad": 0})
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    counts = parameter_counts(model)
    assert counts["language_model"] / counts["total"] >= 0.70
    assert model.config.text_config.head_dim == prof.model.language_model.head_dim


def _paper_counts(language_model: dict) -> dict[str, int]:
    """Parameter counts of the paper profile's model with LM fields replaced, built on the meta device."""
    prof = load_profile("paper")
    lm = prof.model.language_model.model_copy(update=language_model)
    shape = prof.model.model_copy(update={"language_model": lm})
    config = build_config(shape, prof.teacher.vocab_size, 3, {"bos": 1, "eos": 2, "pad": 0})
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)

    def n(module):
        return sum(p.numel() for p in module.parameters())

    return {
        "total": n(model),
        "lm": n(model.language_model),
        "lm_blocks": n(model.language_model.model.layers),
    }


def test_paper_profile_sizes_and_where_the_papers_18x_comes_from():
    """docs/deviations.md: paper.yaml's model has 6.75 B parameters, not 5.4 B; at every maximum it keeps
    1.54 B (4.4×). The paper's 5.4 B → 0.3 B (18×) matches the LM's transformer blocks alone (5.44 B →
    0.28 B)."""
    prof = load_profile("paper")
    c, lm = prof.compression, prof.model.language_model
    before = _paper_counts({})
    heads = c.N_att // lm.head_dim
    after = _paper_counts(
        {
            "num_layers": lm.num_layers - c.N_blocks,
            "intermediate_size": lm.intermediate_size - c.N_ffn,
            "num_heads": lm.num_heads - heads,
            "num_kv_heads": lm.num_kv_heads - heads,
            "hidden_size": lm.hidden_size - c.N_input,
        }
    )
    assert round(before["total"] / 1e9, 2) == 6.75 and round(after["total"] / 1e9, 2) == 1.54
    assert round(before["lm_blocks"] / 1e9, 2) == 5.44 and round(after["lm_blocks"] / 1e9, 2) == 0.28
    assert round(before["total"] / after["total"], 1) == 4.4
    assert round(before["lm_blocks"] / after["lm_blocks"]) == 19


def test_a_pruned_llama_whose_heads_do_not_divide_its_width_round_trips(tmp_path):
    """Hidden 64 → 62 with 4 heads of 16: transformers' LlamaConfig validator refuses it on load
    (huggingface/transformers#46082); the harness's loader lets it through, for that load only."""
    from transformers import LlamaConfig

    from harness.models.public import load_model
    from harness.prune.importance import structure_importance
    from harness.prune.step import prune_step

    model, proc = tiny("llama")
    prune_step(model, "hidden", 2, structure_importance(model, "hidden", "random"))
    text = model.config.text_config
    assert text.hidden_size == 62 and text.hidden_size % text.num_attention_heads
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    pixels, b = _inputs(proc)
    with torch.no_grad():
        a = model(pixel_values=pixels, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        c = again(pixel_values=pixels, input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.equal(a, c)
    with pytest.raises(Exception, match="not a multiple of the number of attention heads"):
        LlamaConfig(hidden_size=62, num_attention_heads=4, head_dim=16)  # the check is back after the load
