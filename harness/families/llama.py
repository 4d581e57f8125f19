"""Llama (and Vicuna, and Mistral, the form a pruned Llama is saved in): gated MLP, grouped-query attention
with an explicit head_dim, RMSNorm. Every level of Algorithm 1 can be expressed in its config.

Why the Mistral form: LlamaConfig in transformers 5 refuses a hidden size that is not a multiple of the heads
(huggingface/transformers#46082), which pruned heads or hidden dimensions produce; MistralConfig without a
sliding window is the identical model and accepts it (tests/test_families.py). Mistral's layers have no
biases, so a biased Llama's step that would need that form is refused before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import MistralConfig

from harness.errors import CheckpointError
from harness.families.base import DecoderOnly, Slice


def heads_divide_hidden(hidden_size: int, heads: int) -> bool:
    return hidden_size % heads == 0


def mistral_form_problem(text) -> str | None:
    """Why a Llama config cannot be written as Mistral's (None: it can)."""
    biased = [f for f in ("attention_bias", "mlp_bias") if getattr(text, f, False)]
    if biased:
        return f"its language model has {' and '.join(biased)}, which Mistral's layers do not"
    return None


@dataclass(frozen=True)
class Llama(DecoderOnly):
    def complete(self, text) -> None:
        """Write head_dim into a config that derives it (hidden size / heads): hidden pruning changes the
        hidden size but not the heads' width, and attention pruning reads head_dim from the config."""
        if getattr(text, "head_dim", None) is None:
            text.head_dim = text.hidden_size // text.num_attention_heads

    def saved_config(self, text):
        if text.model_type != "llama" or heads_divide_hidden(text.hidden_size, text.num_attention_heads):
            return text
        problem = mistral_form_problem(text)
        if problem is not None:  # step_problem refuses such steps before they run
            raise CheckpointError(f"this Llama config cannot be saved for stock transformers: {problem}")
        drop = {"model_type", "architectures", "attention_bias", "mlp_bias", "pretraining_tp"}
        drop.add("transformers_version")
        fields = {k: v for k, v in text.to_dict().items() if k not in drop}
        return MistralConfig(**{**fields, "sliding_window": None})

    def step_problem(self, text, level: str, heads: int, hidden: int) -> str | None:
        if text.model_type != "llama" or heads_divide_hidden(hidden, heads):
            return None
        problem = mistral_form_problem(text)
        if problem is None:
            return None
        return (
            f"would leave {heads} heads over a hidden size of {hidden}, which stock LlamaConfig refuses to "
            f"load, and {problem}; choose an amount that keeps the hidden size a multiple of the heads"
        )


LLAMA_FFN = (
    Slice("mlp.gate_proj.weight", 0),
    Slice("mlp.up_proj.weight", 0),
    Slice("mlp.down_proj.weight", 1),
)

FAMILY = Llama(
    name="llama",
    layers_path="model.layers",
    ffn_width_field="intermediate_size",
    ffn=LLAMA_FFN,
    ffn_biases=("mlp.gate_proj", "mlp.up_proj"),  # Llama's mlp_bias
    torch_pruning=True,
)
