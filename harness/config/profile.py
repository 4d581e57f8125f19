"""Profile schema: the stand-in's data, model, teacher recipe, measurement protocol and Algorithm 1's
hyperparameters, with the cross-field checks that catch an impossible set-up before any compute.

Every model forbids unknown keys (`Strict`), so a typo in a profile YAML fails with the allowed keys listed.
Loading lives in `harness.config.loading`, reading YAML and formatting errors in `harness.config.files`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.config.compression import Compression, whole_step_problems
from harness.config.schema import SEED_MAX, SIZE_MAX, PathFromYaml, Strict


class SynthAdParams(Strict):
    """Knobs of the SynthAd generator (harness/data/synth_ads.py), part of the dataset's key."""

    image_size: int = Field(64, ge=16, le=512)
    color_jitter: int = Field(22, ge=0, le=80, description="max per-channel offset from the class colour")
    noise_std: float = Field(10.0, ge=0.0, le=64.0, description="pixel noise")
    occluder_prob: float = Field(0.3, ge=0.0, le=1.0, description="chance of one random grey occluder")
    icon_hidden_prob: float = Field(
        0.3, ge=0.0, le=1.0, description="product shown as a generic box: only the title tells the category"
    )
    ambiguous_title_prob: float = Field(
        0.3, ge=0.0, le=1.0, description="title word shared by two categories"
    )
    misleading_title_prob: float = Field(
        0.05, ge=0.0, le=1.0, description="title of another category (the image decides); visible icons only"
    )
    label_noise: float = Field(
        0.06, ge=0.0, le=1.0, description="share of labels re-drawn at random (annotator disagreement)"
    )
    catalogue_size: int = Field(
        300, ge=0, description="advertisers in the knowledge catalogue; 0: no knowledge questions"
    )
    zipf_exponent: float = Field(
        1.0, ge=0.0, le=3.0, description="ads draw the advertiser of rank r with weight 1/r^s (long tail)"
    )
    knowledge_prob: float = Field(
        0.7, ge=0.0, le=1.0, description="share of content questions that name only the advertiser"
    )


class Sizes(Strict):
    train: int = Field(ge=10, le=SIZE_MAX)
    validation: int = Field(ge=5, le=SIZE_MAX)
    test: int = Field(ge=5, le=SIZE_MAX)


class Data(Strict):
    source: Literal["synth_ads", "maad_folder"] = "synth_ads"
    path: PathFromYaml | None = Field(
        None, description="folder of train/validation/test.jsonl for source maad_folder"
    )
    seed: int = Field(0, ge=0, le=SEED_MAX)
    sizes: Sizes
    synth_ads: SynthAdParams = SynthAdParams()  # a maad_folder's files are checked by harness/preflight.py


class Encoder(Strict):
    """The shape shared by the vision tower and the Q-Former."""

    hidden_size: int = Field(ge=8)
    intermediate_size: int = Field(ge=8)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)


class Vision(Encoder):
    patch_size: int = Field(ge=1)


class QFormer(Encoder):
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


class Pretraining(TrainStage):
    """The teacher's text-only LM pretraining on the advertiser catalogue (harness/data/catalogue.py)."""

    mentions: int = Field(ge=1, description="sentences per advertiser in the pretraining corpus")
    replay: float = Field(
        0.0,
        ge=0,
        le=4,
        description="pretraining texts mixed into every language-stage batch, as a share of its batch size "
        "(without them, tuning on D_d erases most of what pretraining taught)",
    )
    image_replay: float = Field(
        0.0,
        ge=0,
        le=4,
        description="knowledge questions about every advertiser, each asked with the image of a D_d "
        "knowledge question (a generic box), mixed into every language-stage batch as a share of its batch "
        "size: the catalogue in the multimodal form too, as AntGMM's own training data named far more brands "
        "than MAAD",
    )


class LanguageStage(TrainStage):
    lm_lr: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="learning rate of the language model's own weights (None: lr). A pretrained LM is tuned "
        "more gently than the new projection, so that it keeps what pretraining taught (BLIP-2 freezes it)",
    )


class Adaptation(LanguageStage):
    """Task adaptation after both BLIP-2 stages: projection and language model tuned on D_d until validation
    accuracy stops rising, as AntGMM was adapted to MAAD before it was compressed. Why: the language stage
    mixes replay into every batch and stops at a fixed epoch count, so without it a model trained on D_d
    alone beats the teacher on the samples that need no knowledge (premise P5, results/claims.md)."""

    replay: float = Field(
        0.0,
        ge=0,
        le=4,
        description="pretraining texts in every batch, as a share of its size (Pretraining); none without "
        "teacher.pretraining, which is what it replays",
    )
    image_replay: float = Field(
        0.0,
        ge=0,
        le=4,
        description="catalogue questions with a generic image, as a share (Pretraining); none without "
        "teacher.pretraining",
    )
    patience: int | None = Field(
        None,
        ge=1,
        description="stop after this many epochs without a better validation accuracy (teacher-forced, all "
        "tasks); None: run every epoch of the schedule. Either way the best epoch's weights are kept, the "
        "model as it came (epoch 0) included",
    )


class Teacher(Strict):
    seed: int = Field(0, ge=0, le=SEED_MAX)
    vocab_size: int = Field(512, ge=300, le=200_000)
    pretraining: Pretraining | None = Field(
        None, description="text-only LM pretraining on the SynthAd catalogue before both stages; None: none"
    )
    vision_stage: TrainStage
    language_stage: LanguageStage
    adaptation: Adaptation | None = Field(
        None, description="task adaptation on D_d after both stages, to convergence on validation; None: none"
    )
    checkpoint: PathFromYaml | None = Field(
        None, description="use this saved teacher instead of training one"
    )


class Measurement(Strict):
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default=[1, 32], min_length=1)
    warmup: int = Field(3, ge=0)
    min_iterations: int = Field(10, ge=1)
    min_duration_s: float = Field(2.0, ge=0)
    num_threads: int | None = Field(None, ge=1, description="torch threads; default: torch's own choice")


# level: (step size n, maximum N) in the paper's §4.2 names
class Profile(Strict):
    name: str
    description: str
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(default=[0], min_length=1)
    data: Data
    model: Model
    teacher: Teacher
    evaluation_batch_size: int = Field(64, ge=1)
    measurement: Measurement = Measurement()
    compression: Compression
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
        description="where every phase runs: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N "
        "(harness/device.py; --device)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="precision of every forward pass (autocast; weights and optimizer state stay float32 "
        "unless compression.weights_dtype) and of the weights measured for speed (harness/device.py, "
        "--dtype)",
    )

    def placement_key(self) -> dict | None:
        """What a cache key carries of `device` and `dtype`: nothing for the reference placement, the CPU in
        float32 (so `device: auto` on a machine without CUDA shares its entries with `device: cpu`); else the
        resolved device type and dtype."""
        if self.device == "cpu" and self.dtype == "float32":
            return None
        from harness.device import placement_of  # torch only when it can matter

        placement = placement_of(self.device, self.dtype)
        return None if placement.default else placement.record()

    @model_validator(mode="after")
    def _pretraining_needs_catalogue(self) -> Profile:
        if not isinstance(self.teacher, Teacher):  # a stored profile (harness/results.py ProfileRecord)
            return self
        if self.teacher.pretraining is not None and (
            self.data.source != "synth_ads" or self.data.synth_ads.catalogue_size == 0
        ):
            raise ValueError(
                "teacher.pretraining: pretrains on the SynthAd advertiser catalogue, so it needs data.source "
                "'synth_ads' with data.synth_ads.catalogue_size > 0 (else set teacher.pretraining to null)"
            )
        for where, section in (
            ("pretraining", self.teacher.pretraining),
            ("adaptation", self.teacher.adaptation),
        ):
            if section is not None and section.image_replay > 0 and self.data.synth_ads.knowledge_prob == 0:
                raise ValueError(
                    f"teacher.{where}.image_replay: asks catalogue questions with the images of D_d's "
                    "knowledge questions, so it needs data.synth_ads.knowledge_prob > 0 (else set it to 0)"
                )
        return self

    @model_validator(mode="after")
    def _weights_in_the_compute_dtype(self) -> Profile:
        if self.compression.weights_dtype == "bfloat16" and self.dtype != "bfloat16":
            raise ValueError(
                "compression.weights_dtype: bfloat16 weights need dtype: bfloat16 (every forward pass runs "
                f"under the profile's autocast, and dtype {self.dtype} would feed them {self.dtype} inputs)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_seeds(self) -> Profile:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds: each seed at most once (a repeat is not a new sample), got {self.seeds}"
            )
        return self

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
        bad += [m for m in whole_step_problems(c) if m.split(":")[0] not in {b.split(":")[0] for b in bad}]
        if bad:
            raise ValueError("; ".join(bad))
        return self
