"""Per-task classification accuracy by greedy generation (the paper's metric).

The answer is generated after the prompt, through the model's own `generate` (image to text, end to end),
then compared with the label by exact match after normalisation.

Why a teacher-forced pass first: greedy decoding yields the label token for token, then EOS, exactly when
the argmax at every answer position of one forward pass over prompt + label + EOS is that token. Otherwise
greedy decoding starts with the label's tokens up to the first position whose argmax departs from it, then
that argmax, and often that start already rules a match out (`departure_verdict`). One pass decides those
samples, and only the others are generated (an answer spelled in other tokens, or followed by punctuation,
can still match after normalisation). The verdicts are those of generation alone, at a fraction of its cost
(tests/test_pipeline.py compares them on a trained model and on a pruned one).

Why `vision_of`: compression never touches the vision tower, query tokens or Q-Former, so every model of a run
hands its language model the teacher's query outputs. They are computed once per process and split, in the
batches evaluation uses (the same values as the end-to-end path), and reused by every evaluation that names
the teacher; that is about half of an evaluation's cost at the stand-in's size.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from harness import parallel, sample_log
from harness.data.collate import (
    IGNORE,
    answer_ids,
    length_order,
    pixel_values,
    prompt_batch,
    prompt_of,
    qformer_kwargs,
    training_batch,
)
from harness.device import autocast, current, on
from harness.models.blip2 import lm_inputs_embeds, lm_logits, query_outputs
from harness.results import pack

# per vision-side model: query outputs of each split (by fingerprint and batch size), in evaluation order
_QUERIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# per processor: each split (by fingerprint and batch size) ordered and tokenized (`_prepared`)
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def max_answer_tokens(processor: Blip2Processor, answers) -> int:
    return max(len(answer_ids(processor, a)) for a in set(answers))


@torch.inference_mode()
def generate_answers(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    images,
    questions,
    max_new_tokens: int,
    batch_size: int = 64,
    progress: bool = False,
    queries: torch.Tensor | None = None,
) -> list[str]:
    """Greedy answers for (image, question) pairs; from the images' cached query outputs when `queries` is
    given (as `Blip2ForConditionalGeneration.generate` does after its vision side)."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(questions), batch_size), desc="evaluate", disable=not progress, leave=False):
        b = on(prompt_batch(processor, questions[i : i + batch_size]), model.device)
        ids, mask, config = b["input_ids"], b["attention_mask"], {"max_new_tokens": max_new_tokens}
        if not model.config.use_decoder_only_language_model:  # T5: the prompt is the encoder's input
            out += _t5_answers(model, processor, images[i : i + batch_size], b, queries, i, config)
            continue
        with autocast():
            if queries is None:
                pixels = pixel_values(processor, images[i : i + batch_size]).to(model.device)
                gen = model.generate(
                    pixel_values=pixels,
                    input_ids=ids,
                    attention_mask=mask,
                    **qformer_kwargs(b),
                    **config,
                    do_sample=False,
                )
            else:
                embeds = lm_inputs_embeds(model, queries[i : i + batch_size], ids)
                gen = model.language_model.generate(
                    inputs_embeds=embeds, input_ids=ids, attention_mask=mask, **config, do_sample=False
                )
        # decoder-only generate returns the prompt followed by the new tokens
        new = gen[:, b["input_ids"].shape[1] :].cpu()
        out += processor.tokenizer.batch_decode(new, skip_special_tokens=True)
    return out


def _t5_answers(model, processor, images, b, queries, start: int, config: dict) -> list[str]:
    """Greedy answers of a T5 language model: the encoder reads the prompt with the queries in place of its
    image placeholders, and generate returns the decoder's tokens alone."""
    with autocast():
        if queries is None:
            pixels = pixel_values(processor, images).to(model.device)
            q = query_outputs(model, pixels, **qformer_kwargs(b))
        else:
            q = queries[start : start + len(b["input_ids"])]
        embeds = lm_inputs_embeds(model, q, b["input_ids"])
        gen = model.language_model.generate(
            inputs_embeds=embeds, attention_mask=b["attention_mask"], **config, do_sample=False
        )
    return processor.tokenizer.batch_decode(gen.cpu(), skip_special_tokens=True)


def departure_verdict(tokenizer, greedy_start: list[int], answer: str) -> bool | None:
    """What greedy decoding's first tokens decide, when they are the answer's first tokens and then one that
    departs from it (another token, or no EOS after the answer): False when no continuation can match the
    answer after normalisation, True or False when the departure is EOS (the output is then known), None
    when only generating the rest can tell. Why it holds: for ASCII text without clean-up, decoding is
    concatenation and `normalize(a + b)` starts with `normalize(a)`, so the output's normalised text starts
    with that of its first tokens."""
    if greedy_start[-1] == tokenizer.eos_token_id:
        return normalize(tokenizer.decode(greedy_start[:-1], skip_special_tokens=True)) == normalize(answer)
    text = tokenizer.decode(greedy_start, skip_special_tokens=True)
    if not text.isascii() or getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return None
    return None if normalize(answer).startswith(normalize(text)) else False


@torch.inference_mode()
def forced_verdicts(
    model: Blip2ForConditionalGeneration,
    processor: Blip2Processor,
    images,
    questions,
    answers,
    batch_size: int,
    queries: torch.Tensor | None = None,
    batches: list[dict] | None = None,
) -> list[bool | None]:
    """What one teacher-forced pass over prompt + answer + EOS decides about greedy decoding, per sample:
    True when the argmax at every answer position is the answer's token (greedy decoding yields the answer,
    then EOS); else greedy decoding yields the answer's tokens up to the first position whose argmax departs,
    then that argmax, and `departure_verdict` says whether that already decides (None: generate).
    `batches`: the `training_batch` of every batch, when already built (`_prepared`)."""
    model.eval()
    out: list[bool | None] = []
    for i in range(0, len(questions), batch_size):
        if batches is None:
            b = training_batch(processor, questions[i : i + batch_size], answers[i : i + batch_size])
        else:
            b = batches[i // batch_size]
        d = on(b, model.device)
        with autocast():
            if queries is None and model.config.use_decoder_only_language_model:
                pixels = pixel_values(processor, images[i : i + batch_size]).to(model.device)
                logits = model(
                    pixel_values=pixels,
                    input_ids=d["input_ids"],
                    attention_mask=d["attention_mask"],
                    **qformer_kwargs(d),
                ).logits
            else:  # cached query outputs, or a T5 (whose decoder takes the answer)
                q = queries[i : i + batch_size] if queries is not None else None
                if q is None:
                    pixels = pixel_values(processor, images[i : i + batch_size]).to(model.device)
                    q = query_outputs(model, pixels, **qformer_kwargs(d))
                logits = lm_logits(model, q, d["input_ids"], d["attention_mask"], d["labels"])
        labels, argmax = b["labels"][:, 1:], logits[:, :-1].argmax(-1).cpu()
        for row, answer in zip(range(len(labels)), answers[i : i + batch_size], strict=True):
            at = labels[row] != IGNORE
            target, greedy = labels[row][at].tolist(), argmax[row][at].tolist()
            first = next((k for k, (t, g) in enumerate(zip(target, greedy, strict=True)) if t != g), None)
            if first is None:
                out.append(True)
            else:
                out.append(departure_verdict(processor.tokenizer, target[:first] + [greedy[first]], answer))
    return out


KNOWLEDGE_GROUPS = ("seen", "unseen")


def vision_side(model) -> list[torch.Tensor]:
    """What computes the query outputs: vision tower, query tokens, Q-Former."""
    return [*model.vision_model.parameters(), model.query_tokens, *model.qformer.parameters()]


class _Prepared(NamedTuple):
    """A split in evaluation order (`length_order`), tokenized in evaluation's batches: the same for every
    model a processor evaluates on it."""

    order: list[int]
    tasks: list[str]
    groups: list[str]
    questions: list[str]
    answers: list[str]
    batches: list[dict]


def _prepare(processor, split, batch_size: int) -> _Prepared:
    questions, answers = list(split["question"]), list(split["answer"])
    # batches of similar length, which leaves every sample's verdict as it is and saves the padding
    order = length_order(processor, questions, answers)
    questions, answers = [questions[k] for k in order], [answers[k] for k in order]
    batches = [
        training_batch(processor, questions[i : i + batch_size], answers[i : i + batch_size])
        for i in range(0, len(questions), batch_size)
    ]
    groups = list(split["knowledge_group"]) if "knowledge_group" in split.column_names else []
    return _Prepared(order, list(split["task"]), groups, questions, answers, batches)


def _prepared(processor, split, batch_size: int) -> _Prepared:
    """`_prepare`, once per process, processor, split (by fingerprint) and batch size: at the stand-in's size
    reading and tokenizing a split costs a third of evaluating a model on it."""
    fingerprint = getattr(split, "_fingerprint", None)
    if fingerprint is None:
        return _prepare(processor, split, batch_size)
    memo = _PREPARED.setdefault(processor, {})
    key = (fingerprint, batch_size)
    if key not in memo:
        memo[key] = _prepare(processor, split, batch_size)
    return memo[key]


@torch.inference_mode()
def _split_queries(
    vision_of, processor, fingerprint: str, images: Callable[[], list], questions, batch_size: int
) -> torch.Tensor:
    """Query outputs of `vision_of` for a split's (ordered) samples, in evaluation's batches, computed once
    per process (`images()` is read only then)."""
    memo = _QUERIES.setdefault(vision_of, {})
    key = (fingerprint, batch_size, current().dtype)  # computed under that dtype's autocast
    if key not in memo:
        vision_of.eval()
        images, parts = images(), []
        for i in range(0, len(questions), batch_size):
            pixels = pixel_values(processor, images[i : i + batch_size])
            extra = qformer_kwargs(prompt_batch(processor, questions[i : i + batch_size]))
            with autocast():
                parts.append(query_outputs(vision_of, pixels, **extra))
        memo[key] = torch.cat(parts)
    return memo[key]


def evaluate(model, processor, split, batch_size: int, progress: bool = False, vision_of=None) -> dict:
    """Accuracy per task, overall, and on knowledge questions about advertisers seen / unseen in D_d (when the
    split has a `knowledge_group` column), with each sample's correctness, on a dataset split. `vision_of`:
    a model whose vision side `model` shares unchanged (the teacher, for every model of a compression run);
    its query outputs for the split are then reused (a vision side that differs is refused). Under fsdp, the
    language model runs sharded across the devices (harness/parallel.py)."""
    return parallel.sharded_call(
        model, lambda: _evaluate(model, processor, split, batch_size, progress, vision_of)
    )


def _evaluate(model, processor, split, batch_size: int, progress: bool, vision_of) -> dict:
    if vision_of is not None and vision_of is not model:
        mine, theirs = vision_side(model), vision_side(vision_of)
        if len(mine) != len(theirs) or not all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(mine, theirs, strict=False)
        ):
            raise ValueError("evaluate: vision_of names a model whose vision side differs from the model's")
    fingerprint = getattr(split, "_fingerprint", None)
    prep = _prepared(processor, split, batch_size)
    order, questions, answers, groups = prep.order, prep.questions, prep.answers, prep.groups

    def ordered_images() -> list:
        column = split["image"]
        return [column[k] for k in order]

    queries = None
    if vision_of is not None and fingerprint is not None:
        queries = _split_queries(vision_of, processor, fingerprint, ordered_images, questions, batch_size)
    # decoding the images is needed only where the model's own vision side runs
    images = ordered_images() if queries is None else [None] * len(order)
    forced = forced_verdicts(
        model, processor, images, questions, answers, batch_size, queries=queries, batches=prep.batches
    )
    rest = [i for i, verdict in enumerate(forced) if verdict is None]
    generated = generate_answers(
        model,
        processor,
        [images[i] for i in rest],
        [questions[i] for i in rest],
        max_answer_tokens(processor, answers),
        batch_size=batch_size,
        progress=progress,
        queries=None if queries is None else queries[rest],
    )
    # the generated answers; the label where the forced pass matched; None where its departure decided
    preds: list[str | None] = [None] * len(order)
    correct = [False] * len(order)
    for i, verdict in enumerate(forced):
        preds[order[i]] = answers[i] if verdict else None
        correct[order[i]] = bool(verdict)
    for i, p in zip(rest, generated, strict=True):
        preds[order[i]], correct[order[i]] = p, normalize(p) == normalize(answers[i])
    prompts, targets, by_force = [""] * len(order), [""] * len(order), [False] * len(order)
    for i, k in enumerate(order):
        prompts[k], targets[k] = prompt_of(processor, questions[i]), answers[i]
        by_force[k] = forced[i] is not None
    log = sample_log.records(prep.tasks, groups, prompts, targets, preds, correct, by_force)
    per_task: dict[str, list[bool]] = {}
    for task, hit in zip(prep.tasks, correct, strict=True):
        per_task.setdefault(task, []).append(hit)
    knowledge = {
        g: sum(h) / len(h) if (h := [c for c, k in zip(correct, groups, strict=True) if k in want]) else None
        for g, want in (("all", KNOWLEDGE_GROUPS), *((g, (g,)) for g in KNOWLEDGE_GROUPS))
    }
    return {
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "overall": sum(correct) / len(correct),
        "n": len(correct),
        "knowledge": knowledge if groups else {},
        "correct": correct,
        "predictions": preds,
        "samples": log,
    }


def accuracy_record(acc: dict) -> dict:
    """The fields of a result's `Accuracy` (harness/results.py) from an `evaluate` result."""
    return {
        **acc["per_task"],
        "overall": acc["overall"],
        "n_test": acc["n"],
        **{("knowledge" if g == "all" else f"knowledge_{g}"): v for g, v in acc["knowledge"].items()},
        # the bits from the log itself; a cached record keeps its bits and its log in separate files
        "correct": sample_log.correct_bits(acc["samples"]) if "samples" in acc else pack(acc["correct"]),
    }


def oracle_ceiling(split) -> dict:
    """Expected accuracy of an oracle that knows every image's true attributes: what SynthAd's label noise
    and unidentifiable content samples (hidden product, ambiguous title: a coin flip) leave reachable."""
    per_task: dict[str, list[float]] = {}
    cols = split.select_columns(["task", "answer", "clean_answer", "icon_visible", "title_kind"])
    for row in cols:
        hit = float(row["answer"] == row["clean_answer"])
        if row["task"] == "content" and not row["icon_visible"] and row["title_kind"] == "ambiguous":
            hit *= 0.5
        per_task.setdefault(row["task"], []).append(hit)
    hits = [h for v in per_task.values() for h in v]
    return {
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "overall": sum(hits) / len(hits),
    }
