"""OPT: plain two-layer MLP with biases (fc1, fc2; width `ffn_dim`) and LayerNorm. Only blocks and FFN
channels can be pruned into a standard checkpoint; `refusals` says why not heads or hidden dimensions.
"""

from __future__ import annotations

from harness.families.base import DecoderOnly, Slice

FAMILY = DecoderOnly(
    name="opt",
    layers_path="model.decoder.layers",
    ffn_width_field="ffn_dim",
    ffn=(Slice("fc1.weight", 0), Slice("fc1.bias", 0), Slice("fc2.weight", 1)),
    refusals={
        "attention": (
            "attention pruning of an OPT language model is refused: OPT derives head_dim "
            "from hidden_size / num_attention_heads, so fewer heads cannot be expressed in "
            "its config without changing every head's width"
        ),
        "hidden": (
            "hidden-dimension pruning of an OPT language model is refused: its LayerNorm "
            "subtracts the mean over the width, so removing dimensions changes every "
            "output and cannot be compensated by rescaling"
        ),
    },
)
