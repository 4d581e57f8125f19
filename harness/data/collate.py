"""Turning dataset rows into model inputs: images to pixel values, prompts and answers to token ids.

Training batches are right-padded with the loss on the answer tokens (and EOS) only; generation batches are
left-padded prompts. Prompt and answer are tokenized separately, so the prompt tokens are the same in
training and in generation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Blip2Processor

from harness.data.synth_ads import prompt_text

IGNORE = -100


def pixel_values(processor: Blip2Processor, images: Sequence) -> torch.Tensor:
    return processor.image_processor(list(images), return_tensors="pt")["pixel_values"]


# BLIP-2's own VQA prompt, the default for a public checkpoint (harness/recipes/public_lmms.py)
BLIP2_PROMPT = "Question: {question} Answer:"


def prompt_of(processor: Blip2Processor, question: str) -> str:
    """The prompt around a question: the processor's `prompt_template` where one is set (a public
    checkpoint's, harness/recipes/public_lmms.py), else the stand-in's own (`prompt_text`)."""
    template = getattr(processor, "prompt_template", None)
    return prompt_text(question) if template is None else template.format(question=question)


def _prompt_ids(processor: Blip2Processor, question: str) -> list[int]:
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    return [image_id] * processor.num_query_tokens + tok(prompt_of(processor, question))["input_ids"]


def answer_ids(processor: Blip2Processor, answer: str) -> list[int]:
    tok = processor.tokenizer
    return tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def length_order(processor: Blip2Processor, questions: Sequence[str], answers: Sequence[str]) -> list[int]:
    """Sample indices by the tokens of prompt (query tokens included) + answer + EOS, shortest first. Why: a
    batch is padded to its longest sample, and SynthAd's prompts vary in length by task (a content question
    names a title), so batches in split order are about a third padding; batches of neighbours in this
    order are not."""
    lengths = [
        len(_prompt_ids(processor, q)) + len(answer_ids(processor, a))
        for q, a in zip(questions, answers, strict=True)
    ]
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def qformer_inputs(processor, questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """The instruction for InstructBLIP's Q-Former (its own tokenizer); nothing for BLIP-2 processors."""
    tok = getattr(processor, "qformer_tokenizer", None)
    if tok is None:
        return {}
    enc = tok([prompt_of(processor, q) for q in questions], padding=True, return_tensors="pt")
    return {"qformer_input_ids": enc["input_ids"], "qformer_attention_mask": enc["attention_mask"]}


def qformer_kwargs(batch: dict) -> dict[str, torch.Tensor]:
    """The Q-Former text entries of a batch (InstructBLIP), to pass on as keyword arguments."""
    return {k: batch[k] for k in ("qformer_input_ids", "qformer_attention_mask") if k in batch}


def training_batch(
    processor: Blip2Processor, questions: Sequence[str], answers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Right-padded prompt+answer sequences; `labels` hold the answer tokens and EOS, -100 elsewhere."""
    pad = processor.tokenizer.pad_token_id
    seqs, labels = [], []
    for q, a in zip(questions, answers, strict=True):
        p, t = _prompt_ids(processor, q), answer_ids(processor, a)
        seqs.append(p + t)
        labels.append([IGNORE] * len(p) + t)
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    lab = torch.full((len(seqs), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, (s, y) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        lab[i, : len(y)] = torch.tensor(y)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab, **qformer_inputs(processor, questions)}


def prompt_batch(processor: Blip2Processor, questions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Left-padded prompts for generation."""
    pad = processor.tokenizer.pad_token_id
    seqs = [_prompt_ids(processor, q) for q in questions]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s) :] = torch.tensor(s)
        mask[i, n - len(s) :] = 1
    return {"input_ids": ids, "attention_mask": mask, **qformer_inputs(processor, questions)}
