"""`python -m harness plan`: the memory a compression run needs, per phase, from a checkpoint's config alone.

Why from the config: whether blip2-opt-2.7b fits a 24 GB GPU should be known before 15 GB of weights are
downloaded or loaded. The model is built on the meta device (shapes, no weights), so parameter counts are
exact, and the activations are those its own forward pass saves for backward at the micro-batch, counted on
the meta device. Each phase holds what harness/pipeline.py and harness/objectives.py keep on the device then:
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.config.profile import Profile
from harness.models.blip2 import build_config, lm_blocks, parameter_counts, trained_parameters
from harness.models.public import meta_model, read_config
from harness.objectives import top_k_kept

GiB = 2**30
# allocator fragmentation and the CUDA context: a plan fits when its peak leaves this share of the device free
HEADROOM = 0.10


@dataclass
class Phase:
    name: str
    parts: dict[str, float] = field(default_factory=dict)  # bytes on the device, by what holds them

    @property
    def total(self) -> float:
        return sum(self.parts.values())


@dataclass
class Plan:
    source: str
    params: dict[str, int]  # per part, and "total"
    phases: list[Phase]
    host_cache: float  # bytes of D_d's teacher outputs (CPU memory)
    cache_form: str
    flop: dict[str, float] = field(default_factory=dict)  # compute of each kind of pass, by name
    gpus: int = 1  # processes, one device each (harness/parallel.py)
    parallel: str = "ddp"
    host_models: float = 0.0  # bytes of whole language models each process keeps in CPU memory

    @property
    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.total)

    def fits(self, memory: float) -> bool:
        return self.peak.total <= (1 - HEADROOM) * memory


def stand_in_or_checkpoint(checkpoint: str | Path | None, profile: Profile):
    """The checkpoint's model (or the profile's stand-in, `checkpoint` None) on the meta device."""
    if checkpoint is None:
        vocab = profile.teacher.vocab_size
        config = build_config(profile.model, vocab, vocab - 1, {"bos": 0, "eos": 1, "pad": 2})
    else:
        config = read_config(checkpoint)  # the one reader: a bad folder is one CheckpointError
    return meta_model(config)


def parameters(model) -> dict[str, int]:
    """Parameters per part as the plan shows them (harness/models/blip2.py `parameter_counts`, the query
    tokens counted with the Q-Former), tied weights counted once."""
    c = parameter_counts(model)
    return {
        "vision_model": c["vision_model"],
        "qformer": c["qformer"] + c["query_tokens"],
        "language_projection": c["language_projection"],
        "language_model": c["language_model"],
        "total": c["total"],
    }


def saved_activations(model, batch: int, text_tokens: int, checkpointing: bool, dtype: torch.dtype) -> float:
    """Bytes the language model's forward saves for backward at `batch` × (query tokens + `text_tokens`),
    counted on the meta device with the weights in `dtype`; with `checkpointing`, each block keeps only its
    input and one block at a time recomputes its own."""
    lm = model.language_model.to(dtype)
    seq = model.config.num_query_tokens + text_tokens
    width = model.config.text_config.get_text_config(decoder=True).hidden_size
    weights = {id(p) for p in lm.parameters()}
    layers = lm_blocks(model)
    current, per_block, outside = [None], [0.0] * len(layers), [0.0]

    def pack(t):
        if id(t if t._base is None else t._base) not in weights:  # a weight (or its transpose) is no copy
            nbytes = t.numel() * t.element_size()
            if current[0] is None:
                outside[0] += nbytes
            else:
                per_block[current[0]] += nbytes
        return t

    hooks = []
    for i, layer in enumerate(layers):
        hooks.append(layer.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i)))
        hooks.append(layer.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))
    embeds = torch.empty(batch, seq, width, device="meta", dtype=dtype)
    kwargs = {"decoder_input_ids": torch.zeros(batch, 8, dtype=torch.long, device="meta")}
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            lm(inputs_embeds=embeds, **(kwargs if lm.config.is_encoder_decoder else {}))
    finally:
        for h in hooks:
            h.remove()
    if not checkpointing:
        return outside[0] + sum(per_block)
    block_inputs = len(layers) * batch * seq * width * torch.finfo(dtype).bits / 8
    return outside[0] + block_inputs + max(per_block)


def optimizer_bytes(name: str, model, weight_bytes: int) -> float:
    """State of `name` (harness/train.py make_optimizer) for the trained parts."""
    total = 0.0
    for p in trained_parameters(model):
        n = p.numel()
        if name == "adamw":
            total += 2 * n * weight_bytes
        elif name == "adafactor":  # a row and a column statistic per matrix, a full one per vector
            total += 4 * (sum(p.shape[-2:]) if p.dim() >= 2 else n)
        elif n >= 4096:  # bitsandbytes: two uint8 states, a float32 absmax per 256, two 256-entry maps
            total += 2 * (n + 4 * math.ceil(n / 256) + 4 * 256)
        else:  # its small tensors keep 32-bit states
            total += 8 * n
    return total


def plan(
    profile: Profile,
    checkpoint: str | Path | None = None,
    text_tokens: int = 32,
    answer_tokens: int = 4,
    gpus: int = 1,
    parallel: str | None = None,
) -> Plan:
    """The memory of each phase of a compression run of `checkpoint` with `profile`'s compression section,
    per device of `gpus` processes under `parallel` (default: the profile's compression.parallel)."""
    c = profile.compression
    parallel = parallel or c.parallel
    model = stand_in_or_checkpoint(checkpoint, profile)
    counts = parameters(model)
    text = model.config.text_config
    vocab = text.vocab_size
    lm, projection = counts["language_model"], counts["language_projection"]
    trained = projection + lm
    frozen = counts["vision_model"] + counts["qformer"]
    wt = 2 if c.weights_dtype == "bfloat16" else 4
    compute = torch.float32 if profile.dtype == "float32" else getattr(torch, profile.dtype)
    cb = torch.finfo(compute).bits / 8
    micro, seq = c.micro, model.config.num_query_tokens + text_tokens
    biggest = max(p.numel() for p in trained_parameters(model))
    # teacher outputs: the whole vocabulary or its top k + log-sum-exp at every answer position of D_d
    positions = profile.data.sizes.train * answer_tokens
    top_k = top_k_kept(c, positions, vocab)
    kept = vocab * 4 if top_k is None else top_k * 8 + 4  # the whole row, or float32 values + int64 ids
    query_cache = (
        profile.data.sizes.train * model.config.num_query_tokens * model.config.qformer_config.hidden_size
    )
    host_cache = positions * kept + query_cache * 4
    logits = micro * seq * vocab * cb  # the language model's output, alive until the loss is taken
    loss = micro * answer_tokens * vocab * 4 * 3  # float32 logits, log-probabilities and probabilities
    student = wt * trained  # its vision side is the teacher's own modules (harness/pipeline.py `_student`)
    autocast_copies = trained * cb if (wt == 4 and cb < 4) else 0  # autocast keeps low-precision weight casts
    acts = saved_activations(model, micro, text_tokens, c.activation_checkpointing, compute)
    sharded = parallel == "fsdp" and gpus > 1
    if sharded:  # harness/parallel.py: language models wait in CPU memory, devices hold shards
        blocks = [sum(p.numel() for p in b.parameters()) for b in lm_blocks(model)]
        # gathered at once: the root's own weights (embeddings, final norm, head; the projection when
        # trained) for the whole phase, and two blocks (the one computed and the one prefetched)
        root = lm - sum(blocks)
        gathered, gathered_trained = root + 2 * max(blocks), root + projection + 2 * max(blocks)
        teacher_resident = 4 * frozen
        training = {  # Eq. 1 and distillation; scoring gathers one weight and its gradient, |g·θ| in float32
            "teacher": teacher_resident,
            "shards": wt * trained / gpus,
            "gathered": wt * gathered_trained,
            # the sharded gradients and one block's (and the root's) whole ones before they are split
            "gradients": wt * trained / gpus + wt * (root + projection + max(blocks)),
            "activations": acts + autocast_copies,
            "logits + loss": logits + loss,
        }
        phases = [
            Phase(
                "teacher outputs",
                {
                    "teacher": 4 * (frozen + projection),
                    "shards": 4 * lm / gpus,
                    "gathered": 4 * gathered,
                    "logits": logits + loss / 3,
                },
            ),
            Phase("importance (Eq. 1)", {**training, "scoring": biggest * (4 + 2 * wt)}),
            Phase("distillation", {**training, "optimizer": optimizer_bytes(c.optimizer, model, wt) / gpus}),
            Phase(
                "evaluation",
                {
                    "teacher": teacher_resident,
                    "student": wt * projection,
                    "shards": wt * lm / gpus,
                    "gathered": wt * gathered,
                    "logits": logits / micro * profile.evaluation_batch_size,
                },
            ),
        ]
        host_models = (4 + wt) * lm  # each process's whole teacher and student language models
    else:
        teacher_resident = 4 * (frozen if c.offload_teacher else counts["total"])
        phases = [
            Phase("teacher outputs", {"teacher": 4 * counts["total"], "logits": logits + loss / 3}),
            Phase(
                "importance (Eq. 1)",
                {
                    "teacher": teacher_resident,
                    "student": student,
                    "gradients": wt * trained,
                    "activations": acts + autocast_copies,
                    "logits + loss": logits + loss,
                    "scoring": biggest * 4,  # one parameter's float32 |g·θ| at a time (prune/importance.py)
                },
            ),
            Phase(
                "distillation",
                {
                    "teacher": teacher_resident,
                    "student": student,
                    "gradients": wt * trained,
                    "optimizer": optimizer_bytes(c.optimizer, model, wt),
                    "activations": acts + autocast_copies,
                    "logits + loss": logits + loss,
                },
            ),
            Phase(
                "evaluation",
                {
                    "teacher": teacher_resident,
                    "student": student,
                    "logits": logits / micro * profile.evaluation_batch_size,
                },
            ),
        ]
        host_models = 4 * lm if c.offload_teacher else 0.0
    # compute (2 FLOP per parameter and token forward, 4 more backward; checkpointing recomputes the forward)
    tokens = seq * profile.data.sizes.train
    vision = model.config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    per_image = 2 * counts["vision_model"] * patches + 2 * counts["qformer"] * model.config.num_query_tokens
    d_p = seq * (c.pruning_samples or profile.data.sizes.train)
    backward = 8 if c.activation_checkpointing else 6
    flop = {
        "teacher outputs (once)": 2 * trained * tokens + per_image * profile.data.sizes.train,
        "Eq. 1 over D_p (each pruning step)": backward * trained * d_p,
        "distillation (each epoch of D_d)": backward * trained * tokens,
    }
    return Plan(
        source=str(checkpoint) if checkpoint else f"profile '{profile.name}' stand-in",
        params=counts,
        phases=phases,
        host_cache=host_cache,
        cache_form="full vocabulary" if top_k is None else f"top-{top_k}",
        flop=flop,
        gpus=gpus,
        parallel=parallel,
        host_models=host_models,
    )


def parse_memory(text: str) -> float:
    """'24GB', '24 GiB', '80G' → bytes (GB read as GiB, as GPU memory is quoted). The unit is required: a
    bare '24' would be 24 bytes, never what was meant."""
    t = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("I")
    units = {"G": GiB, "M": 2**20, "T": 2**40}
    refusal = f"--memory: '{text}' is not a size; write a positive number with its unit, e.g. 24GB or 80GB"
    if not t or t[-1] not in units:
        raise ValueError(refusal)
    try:
        number = float(t[:-1])
    except ValueError:
        raise ValueError(refusal) from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(refusal)
    return number * units[t[-1]]


def render(p: Plan, profile: Profile, memory: float | None = None, tflops: float | None = None) -> str:
    """The plan as text: parameters per part, then each phase's memory by what holds it."""
    c = profile.compression
    lines = [
        f"Plan for {p.source}, compression set-up of profile '{profile.name}': micro-batch {c.micro} "
        f"(logical batch {c.batch_size}), dtype {profile.dtype}, student weights {c.weights_dtype}, "
        f"optimizer {c.optimizer}, activation checkpointing {'on' if c.activation_checkpointing else 'off'}, "
        f"teacher language model {'offloaded to CPU' if c.offload_teacher else 'on the device'}"
        + _processes(p),
        "",
        "Parameters: "
        + ", ".join(
            f"{k} {v / 1e9:.3f}B" if v >= 1e8 else f"{k} {v / 1e6:.1f}M" for k, v in p.params.items()
        ),
        "",
        "| phase | " + " | ".join(_columns(p)) + " | total |",
        "| --- |" + " ---: |" * (len(_columns(p)) + 1),
    ]
    for ph in p.phases:
        cells = [f"{ph.parts[k] / GiB:.2f}" if k in ph.parts else "–" for k in _columns(p)]
        lines.append(f"| {ph.name} | " + " | ".join(cells) + f" | **{ph.total / GiB:.2f}** |")
    lines += [
        "",
        f"GiB on {'each' if p.gpus > 1 else 'the'} device. Peak: {p.peak.name}, "
        f"{p.peak.total / GiB:.2f} GiB. D_d's teacher outputs ({p.cache_form}) and query outputs: "
        f"{p.host_cache / GiB:.2f} GiB of CPU memory"
        + (
            f"; whole language models waiting there: {p.host_models / GiB:.2f} GiB per process."
            if p.host_models
            else "."
        ),
    ]
    if memory is not None:
        verdict = "fits" if p.fits(memory) else "does NOT fit"
        lines.append(
            f"{verdict} in {memory / GiB:.0f} GiB (peak ≤ {1 - HEADROOM:.0%} of it, leaving room for the "
            "allocator and the CUDA context)."
        )
    rate = f" (at a sustained {tflops:g} TFLOP/s per device)" if tflops else ""
    if p.gpus > 1:
        rate += f", Eq. 1 and distillation shared by {p.gpus} devices"
    lines += [
        "",
        "Compute, estimated as 2 FLOP per parameter and token forward, 4 backward and 2 more recomputed "
        f"with activation checkpointing{rate}:",
    ]
    for name, f in p.flop.items():
        shared = 1 if name.startswith("teacher outputs") else p.gpus  # every process computes them all
        time = f", {f / (tflops * 1e12 * shared) / 60:.1f} min" if tflops else ""
        lines.append(f"- {name}: {f / 1e15:.1f} PFLOP{time}")
    return "\n".join(lines)


def _processes(p: Plan) -> str:
    if p.gpus == 1:
        return ""
    if p.parallel == "fsdp":
        return (
            f"; {p.gpus} processes, one device each, fsdp: language models sharded across the devices, "
            "whole ones in CPU memory"
        )
    return f"; {p.gpus} processes, one device each, ddp: whole models on every device"


def _columns(p: Plan) -> list[str]:
    seen: dict[str, None] = {}
    for ph in p.phases:
        seen.update(dict.fromkeys(ph.parts))
    return list(seen)
