"""Public BLIP-2-family checkpoints: BLIP-2 and InstructBLIP with a decoder-only or a T5 language model.

Why one loader: every part of the harness (evaluation, measurement, Algorithm 1, save/load of pruned steps)
takes "a BLIP-2-like model and its processor"; this is the one place that knows which class a folder holds.
Checkpoints load from a local folder; a hub id is tried only when the caller allows the network.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoProcessor,
    Blip2ForConditionalGeneration,
    InstructBlipForConditionalGeneration,
    LlamaConfig,
)

from harness import families, parallel, registry
from harness.data.collate import BLIP2_PROMPT
from harness.device import current
from harness.errors import CheckpointError

CLASSES = {"blip-2": Blip2ForConditionalGeneration, "instructblip": InstructBlipForConditionalGeneration}


def check_config(config, where: str) -> None:
    """Refuse what the harness cannot evaluate or compress, saying why and what is supported."""
    if config.model_type not in CLASSES:
        raise CheckpointError(
            f"{where}: model_type '{config.model_type}' is not a BLIP-2-family model; "
            f"supported: {', '.join(CLASSES)}"
        )
    lm = config.text_config.model_type
    if registry.family_name(lm) is None:  # the families: harness/families/
        supported = ", ".join(registry.language_model_types())
        raise CheckpointError(f"{where}: language model '{lm}' is not supported; supported: {supported}")
    if getattr(config, "image_token_index", None) is None:
        raise CheckpointError(
            f"{where}: config.json has no 'image_token_index' (a folder saved in BLIP-2's older format, "
            "where generate cannot tell where the image goes); add the id of the processor's image token "
            "under 'image_token_index', or re-save the checkpoint with a current transformers"
        )


@contextlib.contextmanager
def heads_need_not_divide_hidden():
    """While loading: let a Llama config whose hidden size is not a multiple of its heads through.

    Why: LlamaConfig in transformers 5 refuses such configs (huggingface/transformers#46082), yet the model is
    well defined (projections are sized from the explicit head_dim). save_lmm writes them as Mistral, which
    stock transformers loads; this reads the Llama-form folders that `save_pretrained` called directly (or
    another pruning tool) writes, for the duration of one load only."""
    validators = getattr(LlamaConfig, "__class_validators__", None)
    if validators is None:  # a transformers without class validators never refused these configs
        yield
        return
    LlamaConfig.__class_validators__ = [v for v in validators if v.__name__ != "validate_architecture"]
    try:
        yield
    finally:
        LlamaConfig.__class_validators__ = validators


def save_lmm(model, processor, folder: str | Path) -> None:
    """save_pretrained of the model (its language model's config in its family's saved form,
    harness/families/base.py `Family.saved_config`) and, when given, of its processor. Under accelerate
    launch, only the main process writes (harness/parallel.py)."""

    if not parallel.is_main():
        return
    text = model.config.text_config
    model.config.text_config = families.of_config(text).saved_config(text)
    try:
        model.save_pretrained(folder)
    finally:
        model.config.text_config = text
    if processor is not None:
        processor.save_pretrained(folder)


WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _config_file(folder: Path) -> dict:
    """config.json of a local checkpoint folder, as JSON, or a CheckpointError naming the folder and file."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; pass a local save_pretrained folder")
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{folder}: no config.json (a save_pretrained folder has one)")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: not a config (a JSON object of fields)")
    if "auto_map" in raw:
        raise CheckpointError(f"{file}: asks for custom code (auto_map); the harness runs no remote code")
    if raw.get("model_type") not in CLASSES:
        raise CheckpointError(
            f"{file}: model_type {raw.get('model_type')!r} is not a BLIP-2-family model; supported: "
            f"{', '.join(CLASSES)}"
        )
    return raw


def read_config(path: str | Path, allow_download: bool = False):
    """The checkpoint's config, checked, with an explicit head_dim (read it inside
    heads_need_not_divide_hidden). Every failure to read it is a CheckpointError naming the folder and
    the file, before any weights are touched."""
    if not allow_download or Path(path).is_dir():
        _config_file(Path(path))
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=not allow_download)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: config.json cannot be read by transformers ({e})") from None
    check_config(config, str(path))
    families.of_config(config.text_config).complete(config.text_config)
    return config


def weights_problem(folder: Path, config) -> str | None:
    """What is wrong with a local checkpoint's weights, read from the safetensors headers alone (no tensor
    is loaded): no weights file, a file cut short or with a corrupt header, or a tensor whose shape is not
    the one the config gives. None when they can be loaded."""
    from safetensors import SafetensorError, safe_open

    found = [name for name in WEIGHTS if (folder / name).is_file()]
    if not found:
        return f"{folder}: no weights file (one of {', '.join(WEIGHTS)})"
    if not found[0].startswith("model.safetensors"):
        return None  # a pickled checkpoint: transformers reads it, and says what is wrong
    files = [folder / found[0]]
    if found[0].endswith(".json"):
        try:
            index = json.loads(files[0].read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            return f"{files[0]}: not a safetensors index ({e})"
        files = [folder / name for name in dict.fromkeys(index.values())]
    expected = {k: tuple(v.shape) for k, v in meta_model(config).state_dict().items()}
    for file in files:
        if not file.is_file():
            return f"{file}: missing (named by the safetensors index)"
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
                    shape = tuple(f.get_slice(key).get_shape())
                    if key in expected and expected[key] != shape:
                        want = list(expected[key])
                        return f"{file}: tensor {key} has shape {list(shape)}, config.json gives {want}"
        except (SafetensorError, OSError, ValueError) as e:
            return f"{file}: cut short or corrupt ({e})"
    return None


def meta_model(config):
    """The model `config` describes, weightless on the meta device: shapes and parameter counts of any size
    at no memory (the memory plan, preflight's schedule checks, a weights file's expected shapes)."""
    with heads_need_not_divide_hidden(), torch.device("meta"):
        return CLASSES[config.model_type](config)


def load_model(path: str | Path, allow_download: bool = False, device: str | None = None):
    """The model saved in `path` (BLIP-2 or InstructBLIP), in eval mode, on `device` (default: the current
    placement's, harness/device.py)."""
    with heads_need_not_divide_hidden():
        config = read_config(path, allow_download)
        if Path(path).is_dir() and (problem := weights_problem(Path(path), config)):
            raise CheckpointError(problem)
        try:
            model = CLASSES[config.model_type].from_pretrained(
                path, config=config, local_files_only=not allow_download
            )
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(f"{path}: the weights cannot be loaded ({e})") from None
    text = model.language_model.config  # may be its own object, not config.text_config
    families.of_config(text).complete(text)
    # under fsdp the language model waits in CPU memory, and only its shards reach the device
    return parallel.place(model, device or current().device).eval()


# files the harness writes into the folders it saves: such a checkpoint was trained on the stand-in's prompt
HARNESS_FILES = ("manifest.json", "pruning.json", "train_log.json")


def checkpoint_prompt(folder: str | Path, prompt: str = "auto") -> str | None:
    """The prompt template around each question for a checkpoint (None: the stand-in's own, harness/data/
    collate.py `prompt_of`). `prompt`: stand-in, blip2, a template with one {question}, or auto: the template
    a folder pruned by `python -m harness prune` records, the stand-in's for any other folder the harness
    wrote, BLIP-2's for every other checkpoint."""
    if prompt == "auto":
        pruning = Path(folder) / "pruning.json"
        if pruning.is_file() and "prompt" in (recorded := json.loads(pruning.read_text())):
            return recorded["prompt"]
        prompt = "stand-in" if any((Path(folder) / f).is_file() for f in HARNESS_FILES) else "blip2"
    return {"stand-in": None, "blip2": BLIP2_PROMPT}.get(prompt, prompt)


def load_lmm(path: str | Path, allow_download: bool = False, prompt: str = "auto"):
    """(model, processor) from a checkpoint folder (or a hub id with `allow_download`); the processor
    carries the checkpoint's prompt template (`checkpoint_prompt`), which every batch of it reads."""
    local = Path(path).is_dir()
    if not local and not allow_download:
        raise CheckpointError(
            f"{path}: no such folder; pass a local save_pretrained folder (hub ids need allow_download)"
        )
    read_config(path, allow_download)  # the config and the processor are checked before any weight loads
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=not allow_download)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: no usable processor (tokenizer and image processor) ({e})") from None
    model = load_model(path, allow_download)
    if getattr(processor, "num_query_tokens", None) is None:
        processor.num_query_tokens = model.config.num_query_tokens
    tok = processor.tokenizer
    if tok.pad_token is None:  # Llama 3 style tokenizers; BLIP-2's processors pad with the end token
        if tok.eos_token is None:
            raise CheckpointError(
                f"{path}: the tokenizer has neither a pad token nor an end token to pad with"
            )
        warnings.warn(
            f"{path}: the tokenizer has no pad token; padding with its end token '{tok.eos_token}', as "
            "BLIP-2's processors do",
            stacklevel=2,
        )
        tok.pad_token = tok.eos_token
    processor.prompt_template = checkpoint_prompt(path, prompt) if local else BLIP2_PROMPT
    return model, processor
