"""Result files as typed records: what each experiment kind writes to result.json and what reports read.

Why typed: the recipes validate a result through these models before writing it, and the reports read
fields, never dict keys spelled in two places. Each measurement sits on the model it measures (the teacher,
a seed's final model, a stage end, a public row), batch sizes as fields, so no key is built in one place and
parsed back in another. Torch-free: `python -m harness report` needs only this, pandas and matplotlib.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from harness.cache import content_hash, write_atomic
from harness.config.experiment import CompressionRun, Experiment, PaperRow
from harness.config.profile import Profile
from harness.config.vocabulary import TASKS, StageName

TASK_ORDER = list(TASKS)  # TestSplit.tasks holds each sample's index into this order


class ResultError(ValueError):
    """A result file that is not of this version's shape; the message names the file and the fields."""


def _as_bits(v: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    """A 1-D bool array, refusing anything that is not 0/1 (a score, a label) rather than truncating it."""
    a = np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D 0/1 vector, got shape {a.shape}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must hold only 0/1 (or bool) values")
    return a.astype(bool)


def pack(correct: Sequence[bool] | np.ndarray) -> str:
    """Per-sample correctness as a short ASCII string, so result files can keep it (8 samples a byte)."""
    return base64.b64encode(np.packbits(_as_bits(correct, "correct")).tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    """The bool vector of length `n` that `pack` turned into `text`; a corrupt or mismatched record
    raises rather than silently scoring the wrong samples."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"per-sample record is not valid base64: {e}") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-sample record holds {len(raw)} bytes; {n} samples need {(n + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[n:].any():
        raise ValueError(f"per-sample record has bits set past sample {n}: recorded for more samples?")
    return bits[:n].astype(bool)


# beside result.json: the sha256 of its bytes, written with it (harness/commands/run.py publish_result)
SEAL = ".sha256"


def seal_result(path: Path) -> None:
    """Seal a result file as written, so that a hand edit or a cut-short copy is found on reading."""
    path = Path(path)
    write_atomic(path.with_name(path.name + SEAL), hashlib.sha256(path.read_bytes()).hexdigest() + "\n")


def _accuracy_records(node: Any, where: str = "") -> list[tuple[str, dict]]:
    """Every accuracy record (one with `correct`) in a result's JSON, with where it stands."""
    if isinstance(node, dict):
        if "correct" in node and "overall" in node:
            return [(where.lstrip("."), node)]
        return [r for k, v in node.items() for r in _accuracy_records(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [r for i, v in enumerate(node) for r in _accuracy_records(v, f"{where}.{i}")]
    return []


def aggregate_problems(data: dict) -> list[str]:
    """Each stored accuracy (overall, per task, knowledge groups) that differs from the per-sample record it
    was computed from: the record decides, so a hand-edited number is never rendered."""
    split = data.get("test_split") if isinstance(data, dict) else None
    if not isinstance(split, dict):
        return []
    n, tasks = split.get("n"), np.array([TASK_ORDER[int(c)] for c in split.get("tasks", "")])
    knowledge = np.array(list(split.get("knowledge", "")))
    groups = {"overall": np.ones(n, bool)} | {t: tasks == t for t in TASK_ORDER}
    groups |= {"knowledge": np.isin(knowledge, ["s", "u"]), "knowledge_seen": knowledge == "s"}
    groups |= {"knowledge_unseen": knowledge == "u"}
    problems = []
    for where, acc in _accuracy_records(data):
        if acc.get("correct") is None:
            continue
        try:
            bits = unpack(acc["correct"], n)
        except (ValueError, TypeError) as e:
            problems.append(f"{where}.correct: {e}")
            continue
        for name, mask in groups.items():
            stored = acc.get(name)
            if isinstance(stored, int | float) and mask.any() and abs(stored - bits[mask].mean()) > 1e-9:
                problems.append(
                    f"{where}.{name} is {stored} but its per-sample record gives {bits[mask].mean():.4f}"
                )
    return problems


class Record(BaseModel):
    """Unknown keys are errors: a result of another shape fails on loading, naming the field, instead of
    rendering a table with a blank column."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Throughput(Record):
    """One model at one batch size under the protocol of harness/measure.py (`summarize`)."""

    batch_size: int
    samples_per_s: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_stdev_pct: float
    first_call_ms: float
    warmup: int
    iterations: int
    measured_s: float
    latencies_ms: list[float]
    # absent where nothing is generated (vision-side latency) or no GPU measured: generating one token
    # (prefill), per-token decode, CUDA peak
    prefill_ms: float | None = None
    decode_ms_per_token: float | None = None
    prefill_latencies_ms: list[float] | None = None
    peak_memory_mb: float | None = None


class Measured:
    """Something whose `throughput` may have been measured: one Throughput per batch size, or None."""

    def speed(self, batch_size: int) -> Throughput | None:
        return next((t for t in self.throughput or [] if t.batch_size == batch_size), None)  # type: ignore[attr-defined]


class Parameters(Record):
    """harness/models/blip2.py `parameter_counts`."""

    vision_model: int
    qformer: int
    language_projection: int
    language_model: int
    query_tokens: int
    total: int
    lm_blocks: int


class _Accuracy(Record):
    def task(self, name: str) -> float | None:
        return getattr(self, name)


# one field per task of harness/config/vocabulary.py (sorted, as the committed result files hold them)
Accuracy = create_model(
    "Accuracy",
    __base__=_Accuracy,
    __doc__="Test accuracy per task, overall, and on knowledge questions about advertisers that D_d names "
    "(seen) or not (unseen); None where the split has no knowledge questions.",
    **{t: (float | None, None) for t in sorted(TASKS)},
    overall=(float, ...),
    n_test=(int | None, None),
    knowledge=(float | None, None),
    knowledge_seen=(float | None, None),
    knowledge_unseen=(float | None, None),
    correct=(
        str,
        Field(..., description="each test sample's correctness, in TestSplit order (report/paired.py)"),
    ),
)
# the oracle ceiling's row (harness/recipes/original.py): an accuracy no model earned, so no sample's bit
Ceiling = create_model(
    "Ceiling",
    __base__=Accuracy,
    __doc__="The oracle's accuracy per task and overall on the test split (P5); it answers no sample.",
    correct=(str | None, None),
)
Scores = create_model(
    "Scores",
    __base__=Record,
    __doc__="Validation accuracy as Algorithm 1 tracks it (harness/pipeline.py `_perf`).",
    overall=(float, ...),
    **{f"task_{t}": (float | None, None) for t in sorted(TASKS)},
)


class TraceRow(Record):
    """One pruning step of a run (harness/pipeline.py); a model trained from scratch has one: 'scratch'."""

    step: int
    stage: str = Field(description="a stage, stages joined by '+' (one-shot) or 'scratch'")
    amount: int
    removed_total: int
    params_total: int
    params_lm: int
    acc_pruned: float | None
    acc_distilled: float
    per_task_pruned: Scores | None = None
    per_task_distilled: Scores | None = None
    loss_last_epoch: float | None
    seconds: float
    blocks_dropped: list[int] = []


class StageEnd(Record, Measured):
    """The model at the end of a stage (Table 2's rows); measured for the first seed only."""

    stage: StageName
    step: int
    parameters: Parameters
    accuracy: Accuracy
    throughput: list[Throughput] | None = None
    vision_side_latency: Throughput | None = None


class SeedRecord(Record, Measured):
    """One run for one seed: its final model, its trace, and (first seed, table 'runs') its throughput."""

    seed: int
    run: str = Field(description="the run's cache id (harness/store.py `run_dir`)")
    run_dir: str
    seconds_this_call: float
    compression_seconds: float
    d_d_samples: int
    d_p_samples: int
    structure: dict[str, int]
    parameters: Parameters
    accuracy: Accuracy
    trace: list[TraceRow]
    epochs_used: float
    blocks_dropped: list[int] | None
    p_teacher_validation: Scores
    stage_ends: list[StageEnd] | None = None
    throughput: list[Throughput] | None = None
    vision_side_latency: Throughput | None = None
    distillation_sample_passes: float | None = Field(
        None, description="samples distilled on over the whole run: epochs_used × d_d_samples"
    )


class RunRecord(Record):
    label: str
    spec: CompressionRun
    seeds: list[SeedRecord]


class TeacherRecord(Record, Measured):
    structure: dict[str, int]
    training_sample_passes: int | None = Field(
        None, description="samples the teacher trained on, all stages and epochs (None: a user's checkpoint)"
    )
    parameters: Parameters
    accuracy: Accuracy
    throughput: list[Throughput] | None = None
    vision_side_latency: Throughput | None = None


class ExperimentRecord(Experiment):
    """The resolved experiment as stored; public checkpoints are not looked up again (a folder named there
    may be gone on the machine that renders)."""

    models: list[dict[str, Any]] = []


class ProfileRecord(Profile):
    """The resolved profile as stored; data and teacher folders are not looked up again."""

    data: dict[str, Any]
    teacher: dict[str, Any]


class Git(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    commit: str | None
    dirty: bool | None


class Provenance(BaseModel):
    """harness/provenance.py; further keys are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)
    git: Git
    versions: dict[str, str | None]
    date: str


class Device(BaseModel):
    """harness/measure.py `device_info`; further keys are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)
    device: str
    cpu: str
    cpu_count: int | None
    torch_threads: int
    dtype: str
    platform: str
    cpu_capability: str | None = None
    gpu: str | None = None
    name: str


class SharedRuns(Record):
    """Content hashes of the dataset and teacher the result was made from (harness/store.py)."""

    dataset: str
    teacher: str


class TestSplit(Record):
    """The test samples every `Accuracy.correct` is aligned with: their count, the hash of their ids in order,
    one character per sample for its task (index into harness/config/vocabulary.py TASKS) and its knowledge
    group ('s' seen, 'u' unseen, '-' not a knowledge question), so claims can pair models per sample and score
    subsets offline."""

    n: int
    ids_hash: str
    tasks: str
    knowledge: str
    ceiling: float | None = Field(
        None, description="an oracle's overall accuracy on these samples (SynthAd only; premise P5)"
    )


class Header(Record):
    experiment: ExperimentRecord
    profile: ProfileRecord
    spec_hash: str
    seeds: list[int]
    provenance: Provenance
    device: Device
    test_split: TestSplit


class OriginalRow(Record, Measured):
    row: str
    parameters: Parameters | None = None
    checkpoint_bytes: int | None = None
    accuracy: Accuracy | Ceiling
    throughput: list[Throughput] | None = None
    generated_tokens_per_sample: int | None = None


class OriginalResult(Header):
    runs: SharedRuns
    teacher_training: dict[str, Any]
    rows: list[OriginalRow]
    paper: list[PaperRow]


class CompressionResult(Header):
    runs: list[RunRecord]
    teacher: TeacherRecord
    paper: list[PaperRow]

    @property
    def measured(self) -> bool:
        return self.teacher.throughput is not None


class PublicRow(Record, Measured):
    row: str
    parameters: Parameters
    structure: dict[str, int]
    accuracy: Accuracy
    throughput: list[Throughput] | None = None


class PublicResult(Header):
    runs: SharedRuns
    rows: list[PublicRow]

    @property
    def measured(self) -> bool:
        return any(r.throughput is not None for r in self.rows)


class CurvePoint(Record):
    """The teacher after `step` pruning steps of one level by one criterion, with no recovery."""

    step: int
    removed: int = Field(description="removed so far, in the paper's units (blocks, channels, width, dims)")
    share: float = Field(description="removed / the level's whole width in the teacher")
    params_lm: int
    validation: float
    accuracy: Accuracy


class CurveRecord(Record):
    level: StageName
    criterion: str
    seed: int
    seconds: float
    points: list[CurvePoint]


class CurvesResult(Header):
    runs: SharedRuns
    teacher: TeacherRecord
    curves: list[CurveRecord]


Result = OriginalResult | CompressionResult | PublicResult | CurvesResult
MODELS: dict[str, type[Header]] = {
    "original": OriginalResult,
    "compression": CompressionResult,
    "public_lmms": PublicResult,
    "pruning_curves": CurvesResult,
}


def parse_result(data: dict, source: str | Path = "result") -> Result:
    """A result of the kind its experiment record names, or a ResultError naming the source and fields."""
    kind = (data.get("experiment") or {}).get("kind") if isinstance(data, dict) else None
    if kind not in MODELS:
        raise ResultError(f"{source}: not a result file (experiment.kind is {kind!r})")
    try:
        return MODELS[kind].model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:5])
        raise ResultError(
            f"{source}: not a result of this version ({e.error_count()} problem(s)): {problems}"
        ) from None


def load_result(path: Path) -> Result:
    """A sealed result file whose every aggregate agrees with its per-sample records, or a ResultError naming
    the file and what is wrong (never rendered, never taken for up to date)."""
    path, again = Path(path), "rerun its experiment with --overwrite"
    seal = path.with_name(path.name + SEAL)
    try:
        raw, sealed = path.read_bytes(), seal.read_text().strip() if seal.is_file() else None
    except OSError as e:
        raise ResultError(f"{path}: cannot be read ({e.strerror})") from None
    if sealed is None:
        raise ResultError(f"{path}: no seal ({seal.name}): not written by the harness; {again}")
    if sealed != hashlib.sha256(raw).hexdigest():
        raise ResultError(f"{path}: does not match its seal {seal.name} (edited or damaged); {again}")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ResultError(f"{path}: not valid JSON ({e}); {again}") from None
    if problems := aggregate_problems(data):
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ResultError(f"{path}: {problems[0]}{more}; {again}")
    return parse_result(data, path)


def dump_result(result: Result) -> dict:
    """The JSON form: fields a result never set stay absent (a vision-side latency has no prefill)."""
    return result.model_dump(mode="json", exclude_unset=True)


def spec_hash(exp: Experiment, profile: Profile, inputs: dict[str, str]) -> str:
    """The hash of what determines an experiment's numbers: its kind, what determines each run
    (CompressionRun.determining, in order), the public models, the table (Table 2 also evaluates stage
    ends), whether throughput is measured, and the resolved profile less its seeds (a result computed for
    more seeds answers a request for fewer, see harness/commands/run.py run_experiment). Left out as
    presentation: name, description, reproduces, figures, paper rows, run labels, claims and include (what it
    brings is in the runs); changing them reruns nothing (harness/commands/run.py restates a cached result).
    `inputs`: the content hashes of the dataset and the teacher (harness/store.py `input_hashes`), so that
    rewritten MAAD files or a replaced teacher checkpoint under the same path rerun the experiment."""
    hashed = {
        "inputs": inputs,
        "experiment": {
            "kind": exp.kind,
            "runs": [run.determining() for run in exp.runs],
            "models": [m.model_dump(mode="json") for m in exp.models],
            "table": exp.table,
            "measure": exp.measure,
            **({"curves": [c.model_dump(mode="json") for c in exp.curves]} if exp.curves else {}),
        },
        # the placement enters through the teacher's key in `inputs` (harness/store.py teacher_key)
        "profile": profile.model_dump(mode="json", exclude={"seeds", "device", "dtype"}),
    }
    return content_hash(hashed)


def spec_record(exp: Experiment, profile: Profile, inputs: dict[str, str]) -> dict:
    """What every result file starts with: the resolved experiment and profile, and their hash."""
    return {
        "experiment": exp.model_dump(mode="json"),
        "profile": profile.model_dump(mode="json"),
        "spec_hash": spec_hash(exp, profile, inputs),
    }


def restated(result: Result, exp: Experiment) -> Result:
    """`result` with the presentation of `exp` (same spec hash), written as the recipes write it: its
    experiment record, paper rows and run labels; no number changes."""
    data = dump_result(result)
    data["experiment"] = exp.model_dump(mode="json")
    if "paper" in data:
        data["paper"] = [r.model_dump() for r in exp.paper]
    if isinstance(result, CompressionResult):
        for run, spec in zip(data["runs"], exp.runs, strict=True):
            run["label"], run["spec"] = spec.label, spec.model_dump(mode="json")
    return parse_result(data)
