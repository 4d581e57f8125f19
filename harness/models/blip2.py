"""Build a `Blip2ForConditionalGeneration` with a Llama-family language model from a profile's config.

Why this shape: every pruned model must again be a standard checkpoint that plain `from_pretrained` loads,
and a Llama config with an explicit `head_dim` can express every shape the pruning stages produce.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    LlamaConfig,
    Qwen2Config,
)

from harness import families
from harness.config.profile import Model
from harness.data.collate import IGNORE
from harness.device import current
from harness.errors import PruningError

MODULES = ("vision_model", "qformer", "language_projection", "language_model")
LM_CONFIGS = {"llama": LlamaConfig, "qwen2": Qwen2Config}


def build_config(model: Model, vocab_size: int, image_token_id: int, special: dict[str, int]) -> Blip2Config:
    """The BLIP-2 config of a profile's `model` section (harness/config/profile.py `Model`)."""
    v, q, lm = model.vision, model.qformer, model.language_model
    vision = Blip2VisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        image_size=model.image_size,
        patch_size=v.patch_size,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=q.hidden_size,
        intermediate_size=q.intermediate_size,
        num_hidden_layers=q.num_layers,
        num_attention_heads=q.num_heads,
        encoder_hidden_size=v.hidden_size,
        cross_attention_frequency=1,
        max_position_embeddings=64,
    )
    text = LM_CONFIGS[lm.family](
        vocab_size=vocab_size,
        hidden_size=lm.hidden_size,
        intermediate_size=lm.intermediate_size,
        num_hidden_layers=lm.num_layers,
        num_attention_heads=lm.num_heads,
        num_key_value_heads=lm.num_kv_heads,
        head_dim=lm.head_dim,
        max_position_embeddings=128,
        tie_word_embeddings=lm.tie_word_embeddings,
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        pad_token_id=special["pad"],
    )
    if lm.family == "llama":
        text.head_dim = lm.head_dim
    return Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=q.num_query_tokens,
        image_token_index=image_token_id,
    )


def build_model(config: Blip2Config, seed: int) -> Blip2ForConditionalGeneration:
    """A new model, initialised on the CPU from `seed` (the same weights wherever it then runs), on the
    current device (harness/device.py)."""
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.bos_token_id = config.text_config.bos_token_id
    return model.to(current().device)


def trained_parts(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """What distillation and Eq. 1 update: the projection and the language model. The vision side stays
    frozen, its query outputs cached (harness/distill/loop.py)."""
    return model.language_projection, model.language_model


def trained_parameters(model) -> list[torch.nn.Parameter]:
    return [p for part in trained_parts(model) for p in part.parameters()]


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Total parameters and the share of each BLIP-2 module (tied weights counted once), plus `lm_blocks`:
    the language model's transformer blocks alone, which is what the paper's sizes count
    (docs/deviations.md)."""
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in MODULES}
    counts["query_tokens"] = model.query_tokens.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    counts["lm_blocks"] = sum(p.numel() for layer in lm_blocks(model) for p in layer.parameters())
    return counts


def query_outputs(
    model: Blip2ForConditionalGeneration,
    pixel_values: torch.Tensor,
    qformer_input_ids: torch.Tensor | None = None,
    qformer_attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Q-Former outputs for a batch of images: what the frozen vision side hands to the language model.
    InstructBLIP also feeds the instruction (`qformer_input_ids`) to the Q-Former, as its forward does.
    Inputs follow the model's device (harness/device.py)."""
    device = model.query_tokens.device
    pixel_values = pixel_values.to(device)
    if qformer_input_ids is not None:
        qformer_input_ids = qformer_input_ids.to(device)
    if qformer_attention_mask is not None:
        qformer_attention_mask = qformer_attention_mask.to(device)
    image_embeds = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    if model.config.model_type != "instructblip":
        return model.qformer(
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=mask,
            return_dict=True,
        ).last_hidden_state
    if qformer_input_ids is None:
        raise ValueError("InstructBLIP needs the instruction's qformer_input_ids for its Q-Former")
    text_mask = (
        qformer_attention_mask if qformer_attention_mask is not None else torch.ones_like(qformer_input_ids)
    )
    query_mask = torch.ones(queries.shape[:-1], dtype=torch.long, device=queries.device)
    out = model.qformer(
        input_ids=qformer_input_ids,
        attention_mask=torch.cat([query_mask, text_mask], dim=1),
        query_embeds=queries,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=mask,
        return_dict=True,
    ).last_hidden_state
    return out[:, : queries.shape[1]]


def lm_inputs_embeds(
    model: Blip2ForConditionalGeneration, query_output: torch.Tensor, input_ids: torch.Tensor
) -> torch.Tensor:
    """Token embeddings with the image placeholders replaced by the projected queries (as HF's forward)."""
    table = model.get_input_embeddings()
    input_ids = input_ids.to(table.weight.device)
    embeds = table(input_ids)
    image = model.language_projection(query_output.to(embeds.device)).to(embeds.dtype)
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
    return embeds.masked_scatter(mask, image)


def lm_logits(
    model: Blip2ForConditionalGeneration,
    query_output: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of the language model from cached query outputs: the training path when the vision side is
    frozen, identical to `model(pixel_values, input_ids).logits`. An encoder-decoder (T5) language model
    needs the batch's `labels` to tell the prompt from the answer (`_t5_logits`)."""
    if not model.config.use_decoder_only_language_model:
        if labels is None:
            raise ValueError("lm_logits: an encoder-decoder language model needs the batch's labels")
        return _t5_logits(model, query_output, input_ids, attention_mask, labels)
    embeds = lm_inputs_embeds(model, query_output, input_ids)
    return model.language_model(inputs_embeds=embeds, attention_mask=attention_mask.to(embeds.device)).logits


def _t5_logits(model, query_output, input_ids, attention_mask, labels) -> torch.Tensor:
    """A T5's logits in the decoder-only layout of a training batch (harness/data/collate.py): the prompt
    (image placeholders and question, where `labels` is IGNORE) goes to the encoder, the answer to the
    decoder after its start token, and the decoder's logits for the answer's j-th token land one position
    before that token, where a decoder-only model's would, so that every reader of answer positions
    (harness/objectives.py) takes both alike. Elsewhere: zeros."""
    lm = model.language_model
    device = lm.device
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
    prompt, answer = (attention_mask == 1) & (labels == IGNORE), labels != IGNORE
    pad = lm.config.pad_token_id or 0
    rows = len(input_ids)
    enc = torch.full((rows, int(prompt.sum(1).max())), pad, dtype=torch.long, device=device)
    dec = torch.full((rows, int(answer.sum(1).max())), pad, dtype=torch.long, device=device)
    enc_mask, dec_mask = torch.zeros_like(enc), torch.zeros_like(dec)
    for i in range(rows):
        p, a = input_ids[i][prompt[i]], labels[i][answer[i]]
        enc[i, : len(p)], enc_mask[i, : len(p)] = p, 1
        dec[i, 0], dec[i, 1 : len(a)], dec_mask[i, : len(a)] = lm.config.decoder_start_token_id, a[:-1], 1
    logits = lm(
        inputs_embeds=lm_inputs_embeds(model, query_output, enc),
        attention_mask=enc_mask,
        decoder_input_ids=dec,
        decoder_attention_mask=dec_mask,
    ).logits
    out = logits.new_zeros((*input_ids.shape, logits.shape[-1]))
    r, c = answer.nonzero(as_tuple=True)
    out[r, c - 1] = logits[dec_mask.bool()]
    return out


def blocks(model, module: str) -> nn.ModuleList:
    """The repeated blocks of a module, in order."""
    if module == "language_model":
        return families.of(model).layers(model.language_model)
    if module == "vision_model":
        return model.vision_model.encoder.layers
    if module == "qformer":
        return model.qformer.encoder.layer
    raise PruningError(f"unknown module '{module}'; allowed: language_model, vision_model, qformer")


def lm_blocks(model) -> list[nn.Module]:
    """Every block of the language model: a T5's encoder blocks, then its decoder's."""
    return families.of(model).all_blocks(model.language_model)
