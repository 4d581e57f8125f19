"""A Hugging Face model card (README.md with YAML front matter) in every compressed folder the harness writes:
`python -m harness prune`'s output and every step of a compression run.

Why: a pruned folder loads with stock `from_pretrained` anywhere, so it must say on its own what it is:
its base model, what was pruned at each step, its size, how well it did and on what, and the harness version
and command that made it. Nothing in it varies from run to run but what it describes.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from harness.cache import write_atomic
from harness.provenance import git_state

TAGS = ("blip-2", "structured-pruning", "knowledge-distillation", "antgmm-reproduction")


def card(
    title: str,
    base: str,
    steps: list[dict],
    parameters: dict,
    accuracy: str,
    extra: list[str] | None = None,
) -> str:
    """The card's text. `steps`: one row per pruning step (step, stage, removed, parameters after);
    `parameters`: the folder's counts (harness/models/blip2.py parameter_counts); `accuracy`: one sentence
    naming the split and seed, or how to measure it."""
    commit = git_state()["commit"] or "unknown"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags:",
        *(f"- {t}" for t in TAGS),
        "---",
        "",
        f"# {title}",
        "",
        f"Compressed from `{base}` by the reproduction harness of *Large Multimodal Model Compression via "
        "Efficient Pruning and Distillation at AntGroup* (arXiv 2312.05795): structured pruning (blocks, "
        "FFN channels, attention heads, hidden dimensions), each step followed by distillation where the run "
        "has it.",
        "",
        "## What was pruned",
        "",
        "| step | stage | removed | parameters after |",
        "| ---: | --- | ---: | ---: |",
        *(f"| {s['step']} | {s['stage']} | {s['removed']} | {s['parameters']:,} |" for s in steps),
    ]
    if not steps:
        lines.append("| 0 | (none yet: the base model's copy) | 0 | – |")
    lines += [
        "",
        "## Size and accuracy",
        "",
        f"- Parameters: {parameters['total']:,} in all, {parameters['language_model']:,} in the language "
        "model.",
        f"- Accuracy: {accuracy}",
        *(f"- {x}" for x in extra or []),
        "",
        "## How it was made",
        "",
        f"- Harness commit `{commit}`.",
        f"- Command: `{_command()}`",
        "",
        "## Loading",
        "",
        "```python",
        "from transformers import AutoProcessor, Blip2ForConditionalGeneration",
        "",
        'model = Blip2ForConditionalGeneration.from_pretrained("THIS_FOLDER")',
        'processor = AutoProcessor.from_pretrained("THIS_FOLDER")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _command() -> str:
    """The command line of this process as its user typed it."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    head = ["python", "-m", "harness"] if prog == "__main__.py" else ["python", prog or "-c"]
    return shlex.join([*head, *sys.argv[1:]])


def write_card(folder: Path, text: str) -> Path:
    path = Path(folder) / "README.md"
    write_atomic(path, text)
    return path
