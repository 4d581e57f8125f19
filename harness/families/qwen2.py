"""Qwen2: the Llama layout with biases on the query, key and value projections, which the slice tables pick
up from the checkpoint, and a head_dim that stock configs derive from hidden size / heads (written out on
load, harness/families/llama.py `Llama.complete`). Saved in its own form: Qwen2Config does not ask heads to
divide the hidden size, so `Llama.saved_config` and `Llama.step_problem` leave it as it is.
"""

from __future__ import annotations

from dataclasses import replace

from harness.families.llama import FAMILY as LLAMA

FAMILY = replace(LLAMA, name="qwen2")
