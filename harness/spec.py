"""Experiment files and profiles: schema, cross-field checks, and resolution into one validated spec.

Why strict: a typo in a YAML key or an impossible step size must fail before any minute of compute is
spent, with a message that names the file, the field and what is allowed. Every model forbids unknown keys.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = ROOT / "experiments"
PROFILES_DIR = EXPERIMENTS_DIR / "profiles"
DEFAULT_PROFILE = "cpu"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthAdKnobs(Strict):
    image_size: int = Field(64, ge=16, le=512)
    color_jitter: int = Field(22, ge=0, le=80)
    noise_std: float = Field(10.0, ge=0.0, le=64.0)
    occluder_prob: float = Field(0.3, ge=0.0, le=1.0)
    icon_hidden_prob: float = Field(0.3, ge=0.0, le=1.0)
    ambiguous_title_prob: float = Field(0.3, ge=0.0, le=1.0)
    misleading_title_prob: float = Field(0.05, ge=0.0, le=1.0)
    label_noise: float = Field(0.06, ge=0.0, le=1.0)


class Sizes(Strict):
    train: int = Field(ge=10)
    validation: int = Field(ge=5)
    test: int = Field(ge=5)


class Data(Strict):
    source: Literal["synth_ads", "maad_folder"] = "synth_ads"
    path: Path | None = Field(
        None, description="folder of train/validation/test.jsonl for source maad_folder"
    )
    seed: int = 0
    sizes: Sizes
    synth_ads: SynthAdKnobs = SynthAdKnobs()

    @model_validator(mode="after")
    def _path(self) -> Data:
        if self.source == "maad_folder" and (self.path is None or not Path(self.path).is_dir()):
            raise ValueError(f"path: source 'maad_folder' needs an existing folder, got {self.path!r}")
        return self


class Vision(Strict):
    hidden_size: int = Field(ge=8)
    intermediate_size: int = Field(ge=8)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    patch_size: int = Field(ge=1)


class QFormer(Strict):
    hidden_size: int = Field(ge=8)
    intermediate_size: int = Field(ge=8)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_query_tokens: int = Field(ge=1)


class LanguageModel(Strict):
    family: Literal["llama", "qwen2"] = "llama"
    hidden_size: int = Field(ge=8)
    intermediate_size: int = Field(ge=8)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=4)
    tie_word_embeddings: bool = False

    @model_validator(mode="after")
    def _heads(self) -> LanguageModel:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads: num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        return self


class Model(Strict):
    image_size: int = Field(ge=16)
    vision: Vision
    qformer: QFormer
    language_model: LanguageModel

    @model_validator(mode="after")
    def _shapes(self) -> Model:
        if self.image_size % self.vision.patch_size:
            raise ValueError(
                f"vision.patch_size: patch_size ({self.vision.patch_size}) must divide "
                f"image_size ({self.image_size})"
            )
        for name in ("vision", "qformer"):
            m = getattr(self, name)
            if m.hidden_size % m.num_heads:
                raise ValueError(
                    f"{name}.num_heads: num_heads ({m.num_heads}) must divide hidden_size ({m.hidden_size})"
                )
        return self


class TrainStage(Strict):
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0, lt=1)
    batch_size: int = Field(ge=1)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps spent warming up")


class Teacher(Strict):
    seed: int = 0
    vocab_size: int = Field(512, ge=300, le=200_000)
    vision_stage: TrainStage
    language_stage: TrainStage
    checkpoint: Path | None = Field(None, description="use this saved teacher instead of training one")

    @model_validator(mode="after")
    def _checkpoint(self) -> Teacher:
        if self.checkpoint is not None and not (Path(self.checkpoint) / "config.json").is_file():
            raise ValueError(
                f"checkpoint: {self.checkpoint} has no config.json (not a save_pretrained folder)"
            )
        return self


class Measurement(Strict):
    batch_sizes: list[int] = Field(default=[1, 32], min_length=1)
    warmup: int = Field(3, ge=0)
    min_iterations: int = Field(10, ge=1)
    min_duration_s: float = Field(2.0, ge=0)
    num_threads: int | None = Field(None, ge=1, description="torch threads; default: torch's own choice")


class Compression(Strict):
    """Algorithm 1's hyperparameters (paper §4.2 names). Widths count channels / inner width / dims."""

    alpha: float = Field(
        0.15, gt=0, le=1, description="tolerance α: a stage stops once accuracy fell by α (p_start − p ≥ α)"
    )
    epochs: int = Field(4, ge=0, description="E: distillation epochs after each pruning step")
    lr: float = Field(3e-5, gt=0, lt=1)
    batch_size: int = Field(ge=1)
    gamma: float = Field(1.0, ge=0, description="γ of the pairwise term in Eq. 5")
    n_b: int = Field(ge=1)
    N_blocks: int = Field(ge=0)
    n_h_ffn: int = Field(ge=1)
    N_ffn: int = Field(ge=0)
    n_h_att: int = Field(ge=1)
    N_att: int = Field(ge=0)
    n_d: int = Field(ge=1)
    N_input: int = Field(ge=0)
    pruning_samples: int | None = Field(
        None, ge=1, description="size of D_p (the first samples of D_d); None: all of D_d, as in the paper"
    )


class Profile(Strict):
    name: str
    description: str
    seeds: list[int] = Field(default=[0], min_length=1)
    data: Data
    model: Model
    teacher: Teacher
    evaluation_batch_size: int = Field(64, ge=1)
    measurement: Measurement = Measurement()
    compression: Compression

    @model_validator(mode="after")
    def _compression_fits_model(self) -> Profile:
        c, lm = self.compression, self.model.language_model
        att_width = lm.num_heads * lm.head_dim
        group = lm.num_heads // lm.num_kv_heads * lm.head_dim
        checks = [
            (
                c.n_b <= max(c.N_blocks, 1),
                f"compression.n_b: n_b ({c.n_b}) is larger than N_blocks ({c.N_blocks})",
            ),
            (
                c.N_blocks < lm.num_layers,
                f"compression.N_blocks: N_blocks ({c.N_blocks}) must be below the language model's "
                f"{lm.num_layers} layers",
            ),
            (
                c.n_h_ffn <= max(c.N_ffn, 1),
                f"compression.n_h_ffn: n_h_ffn ({c.n_h_ffn}) is larger than N_ffn ({c.N_ffn})",
            ),
            (
                c.N_ffn < lm.intermediate_size,
                f"compression.N_ffn: N_ffn ({c.N_ffn}) must be below "
                f"intermediate_size ({lm.intermediate_size})",
            ),
            (
                c.n_h_att % group == 0,
                f"compression.n_h_att: n_h_att ({c.n_h_att}) must be a multiple of one key-value group's "
                f"inner width "
                f"({group} = num_heads/num_kv_heads × head_dim): whole heads are pruned",
            ),
            (
                c.n_h_att <= max(c.N_att, 1),
                f"compression.n_h_att: n_h_att ({c.n_h_att}) is larger than N_att ({c.N_att})",
            ),
            (
                c.N_att < att_width,
                f"compression.N_att: N_att ({c.N_att}) must be below the attention width ({att_width})",
            ),
            (
                c.n_d <= max(c.N_input, 1),
                f"compression.n_d: n_d ({c.n_d}) is larger than N_input ({c.N_input})",
            ),
            (
                c.N_input < lm.hidden_size,
                f"compression.N_input: N_input ({c.N_input}) must be below hidden_size ({lm.hidden_size})",
            ),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("; ".join(bad))
        return self


class PaperRow(Strict):
    """One row of a paper table, transcribed as reference (None where the paper gives no value)."""

    row: str
    size_b: float | None = None
    a10_samples_per_s: float | None = None
    color: float | None = None
    manifestation: float | None = None
    content: float | None = None
    logo: float | None = None
    style: float | None = None
    overall: float | None = None


class CompressionRun(Strict):
    """One variant of Algorithm 1, computed once per seed and shared by every experiment that names it."""

    label: str = Field(min_length=1, description="the row's name in tables and figures")
    stages: list[Literal["block", "ffn", "attention", "hidden"]] = Field(
        default=["block", "ffn", "attention", "hidden"], min_length=1
    )
    mode: Literal["iterative", "one_shot", "scratch"] = Field(
        "iterative",
        description="scratch: the iterative run's final structure trained from scratch (baseline)",
    )
    criterion: Literal["first_order", "l1", "l2", "random"] = "first_order"
    block_criterion: Literal["last", "block_influence"] = Field(
        "last", description="which blocks the block stage drops: the last (paper) or lowest Block Influence"
    )
    pruner: Literal["harness", "torch_pruning"] = Field(
        "harness", description="torch_pruning: FFN channels and hidden dims by Torch-Pruning (baseline)"
    )
    variant: Literal["eq5", "kl_only", "hard_label", "released_pairwise"] = "eq5"
    data_fraction: float = Field(
        1.0, gt=0, le=1, description="share of the training split used as D_d and D_p (RQ2)"
    )
    paper: PaperRow | None = Field(None, description="the paper's values for this row, if it has one")

    @model_validator(mode="after")
    def _order(self) -> CompressionRun:
        order = ["block", "ffn", "attention", "hidden"]
        if len(set(self.stages)) != len(self.stages) or self.stages != sorted(self.stages, key=order.index):
            raise ValueError(f"stages: each stage at most once, in the order {order}; got {self.stages}")
        return self

    def key(self) -> dict:
        """What determines the run's outcome (label and paper values do not). Fields added after results
        were first committed stay out of the key at their default, so those runs keep their cache entries."""
        key = self.model_dump(mode="json", exclude={"label", "paper"})
        for field, default in (("block_criterion", "last"), ("pruner", "harness")):
            if key[field] == default:
                del key[field]
        return key


class PublicModel(Strict):
    """One row group of the public-LMM comparison: a BLIP-2-family checkpoint, optionally fine-tuned on the
    training split and compressed with Algorithm 1."""

    name: str = Field(min_length=1)
    checkpoint: str = Field(
        description="a save_pretrained folder, a hub id (with allow_download), 'teacher' (the profile's) or "
        "'compressed' (the full multi-stage run of the teacher, first seed)"
    )
    allow_download: bool = False
    fine_tune_epochs: int = Field(0, ge=0, description="generative fine-tuning epochs on the training split")
    fine_tune_lr: float = Field(1e-4, gt=0, lt=1)
    compress: bool = Field(False, description="run Algorithm 1 on it (after fine-tuning, if any)")
    stages: list[Literal["block", "ffn", "attention", "hidden"]] | None = Field(
        None, description="default: every stage its language model supports (OPT: block, ffn)"
    )
    compression: dict[str, Any] = Field(
        default_factory=dict,
        description="fields of the profile's compression section to change for this model",
    )

    @model_validator(mode="after")
    def _checkpoint(self) -> PublicModel:
        if self.checkpoint in ("teacher", "compressed") or self.allow_download:
            return self
        if not (Path(self.checkpoint) / "config.json").is_file():
            raise ValueError(
                f"checkpoint: {self.checkpoint} is not a save_pretrained folder (no config.json); use a "
                "local folder, 'teacher', 'compressed', or a hub id with allow_download: true"
            )
        from harness.models.public import CheckpointError, check_config  # transformers only when needed

        try:
            from transformers import AutoConfig

            check_config(AutoConfig.from_pretrained(self.checkpoint), self.checkpoint)
        except CheckpointError as e:
            raise ValueError(f"checkpoint: {e}") from None
        return self


class Experiment(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    reproduces: str = Field(min_length=3, description="the paper table or figure this experiment regenerates")
    kind: Literal["original", "compression", "public_lmms"]
    description: str
    paper: list[PaperRow] = Field(default=[], description="paper rows shown beside ours as a whole")
    runs: list[CompressionRun] = Field(default=[], description="for kind 'compression': one row each")
    models: list[PublicModel] = Field(default=[], description="for kind 'public_lmms': the checkpoints")
    table: Literal["runs", "stages"] = Field(
        "runs", description="one row per run, or (Table 2) one row per stage end of the first run"
    )
    figures: list[Literal["trace", "bars", "sample_size", "tradeoff"]] = Field(
        default=[],
        description="trace: Figures 6/10/11; bars: accuracy per run (Figure 8); sample_size: Figure 7; "
        "tradeoff: accuracy and throughput against size",
    )
    measure: bool = Field(True, description="measure throughput of every row (interleaved with the teacher)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="deep-merged into the profile")

    @model_validator(mode="after")
    def _runs(self) -> Experiment:
        if self.kind == "compression" and not self.runs:
            raise ValueError("runs: kind 'compression' needs at least one run (label, stages, mode, ...)")
        if self.kind == "public_lmms" and not self.models:
            raise ValueError("models: kind 'public_lmms' needs at least one model (name, checkpoint)")
        labels = [r.label for r in self.runs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"runs: labels must be unique, got {labels}")
        if any(r.pruner == "torch_pruning" and r.mode == "one_shot" for r in self.runs):
            raise ValueError("runs: the Torch-Pruning baseline is wired for iterative runs only")
        if self.table == "stages" and self.runs and self.runs[0].mode != "iterative":
            raise ValueError("table: 'stages' needs an iterative first run (one-shot has no stage ends)")
        return self


class SpecError(ValueError):
    """A spec file is invalid; the message names the file, the field and what is allowed."""


def _model_in(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `X`, `list[X]` or `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


def _format(err: ValidationError, model: type[BaseModel], source: Path) -> str:
    lines = [f"{source}: invalid {model.__name__.lower()} ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            parent = model
            for part in e["loc"][:-1]:
                if isinstance(part, int):  # a list index: stay on the list's item model
                    continue
                field = parent.model_fields.get(str(part)) if hasattr(parent, "model_fields") else None
                parent = _model_in(getattr(field, "annotation", None)) if field else None
            allowed = (
                sorted(parent.model_fields)
                if isinstance(parent, type) and issubclass(parent, BaseModel)
                else []
            )
            lines.append(f"  - field '{loc}': unknown key; allowed keys here: {', '.join(allowed)}")
        elif e["type"] == "value_error":
            # cross-field checks say "sub.field: text; other.field: text" relative to where they run
            for part in e["msg"].removeprefix("Value error, ").split("; "):
                sub, _, text = part.partition(": ")
                where = ".".join(x for x in (loc if e["loc"] else "", sub) if x)
                lines.append(f"  - field '{where}': {text}")
        else:
            lines.append(f"  - field '{loc}': {e['msg']} (got {e.get('input')!r})"[:400])
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_profile(
    name_or_path: str | Path, overrides: dict | None = None, source: Path | None = None
) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
            raise SpecError(f"unknown profile '{name_or_path}'; allowed: {', '.join(known)}")
    raw = _merge(_read_yaml(path), overrides or {})
    try:
        return Profile.model_validate(raw)
    except ValidationError as e:
        where = path if not overrides else Path(f"{path} + overrides from {source}")
        raise SpecError(_format(e, Profile, where)) from None


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{path}.yaml"
    raw = _read_yaml(path)
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_format(e, Experiment, path)) from None
    if exp.name != path.stem:
        raise SpecError(f"{path}: field 'name': must equal the file name '{path.stem}', got '{exp.name}'")
    return exp


def resolve(
    experiment: str | Path, profile: str | Path = DEFAULT_PROFILE, num_seeds: int | None = None
) -> tuple[Experiment, Profile]:
    """Validate an experiment and its profile (with the experiment's overrides applied) together.
    `num_seeds` replaces the profile's seeds by 0 .. num_seeds-1."""
    exp = load_experiment(experiment)
    path = Path(experiment) if Path(experiment).suffix else EXPERIMENTS_DIR / f"{experiment}.yaml"
    overrides = exp.overrides if num_seeds is None else {**exp.overrides, "seeds": list(range(num_seeds))}
    prof = load_profile(profile, overrides, source=path)
    for i, m in enumerate(exp.models):  # per-model compression changes, checked against the schema now
        try:
            Compression.model_validate({**prof.compression.model_dump(), **m.compression})
        except ValidationError as e:
            msg = _format(e, Compression, path).replace("field '", f"field 'models.{i}.compression.")
            raise SpecError(msg) from None
    return exp, prof


def experiment_files() -> list[Path]:
    return sorted(EXPERIMENTS_DIR.glob("*.yaml"))
