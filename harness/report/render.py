"""Tables (and the figures they come with) from a result file alone, ours beside the paper's.

Why from the file: `python -m harness report` must be able to redo every table and figure offline, after a
change of style, with nothing recomputed. Numbers come from the tidy frame (harness/report/frame.py);
several seeds show as mean ± std.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from harness.config.experiment import PaperRow
from harness.config.vocabulary import BY_NAME, STAGES, TASKS
from harness.report.budget import FINAL_LM_NOTE, budget_figure, budget_table
from harness.report.figures import (
    bars_figure,
    public_figure,
    sample_size_figure,
    trace_figures,
    tradeoff_figure,
)
from harness.report.frame import mean_std, pick, result_frame, summary, value, values
from harness.report.tables import make_table
from harness.report.traces import write_trace_csv
from harness.results import CompressionResult, OriginalResult, PublicResult, Throughput, load_result

SIZE_AND_SPEED = [
    "Params (M)",
    "LM params (M)",
    "LM reduction",
    "Samples/s (b=1)",
    "Speed-up (b=1)",
    "Speed-up (b=32)",
]
# accuracy on knowledge questions about advertisers D_d names (seen) or not (unseen): what compression kept of
# what the teacher knew (data_cards/synth_ads.md)
KNOWLEDGE = {"knowledge_seen": "Knowledge (seen)", "knowledge_unseen": "Knowledge (unseen)"}
FIGURES = {
    "trace": trace_figures,
    "bars": bars_figure,
    "sample_size": sample_size_figure,
    "tradeoff": tradeoff_figure,
    "budget": budget_figure,
}


def _ratio(a: float | None, b: float | None) -> str | None:
    return f"{a / b:.2f}×" if a and b else None


def _paper_base(paper: list[PaperRow]) -> float | None:
    return next((r.a10_samples_per_s for r in paper if r.a10_samples_per_s), None)


def _paper_row(r: PaperRow | None, base: float | None, tasks: bool) -> list:
    if r is None:
        return []
    size = r.size_b * 1e3 if r.size_b else None
    speed = r.a10_samples_per_s
    row = [f"{r.row} — paper", size, None, None, speed, _ratio(speed, base), None]
    return row + ([getattr(r, t) for t in TASKS] if tasks else []) + [r.overall] + [None] * len(KNOWLEDGE)


def render_original(out_dir: Path) -> str:
    """Table 2, row 'Original' (ours beside the paper's)."""
    res = load_result(Path(out_dir) / "result.json")
    assert isinstance(res, OriginalResult)
    frame = result_frame(res)
    headers = ["Model", "Params (M)", "LM share", "Samples/s (b=1)", "Samples/s (b=32)", "Speed-up"]
    headers += [t.capitalize() for t in TASKS] + ["Overall", *KNOWLEDGE.values()]
    rows, base = [], None
    for i, r in enumerate(res.rows):
        ours = pick(frame, position=i)
        total, b1 = value(ours, "params_total"), value(ours, "samples_per_s", 1)
        base = base or b1
        rows.append(
            [
                f"{r.row} — ours",
                total / 1e6 if total else None,
                value(ours, "params_language_model") / total if total else None,
                b1,
                value(ours, "samples_per_s", 32),
                _ratio(b1, base),
            ]
            + [value(ours, t) for t in (*TASKS, "overall", *KNOWLEDGE)]
        )
    paper_base = _paper_base(res.paper)
    for r in res.paper:
        row = _paper_row(r, paper_base, tasks=True)
        rows.append(row[:2] + [None, row[4], None, row[5]] + row[7:])
    caption = (
        f"Reproduces {res.experiment.reproduces}. Ours: profile '{res.profile.name}', "
        f"throughput on {res.device.name} (median, end-to-end generation); "
        "paper: AntGMM on an A10 GPU. Compare speed-ups, not absolute samples/s."
        f"{spread_note(res)}"
    )
    return make_table(headers, rows, caption, out_dir)


# a measurement whose latencies spread (interquartile range / median) beyond this is flagged in the caption
SPREAD_LIMIT = 0.10


def latency_spread(latencies: list[float]) -> float:
    """Interquartile range over median of one measurement's raw latencies: robust to the odd slow call that
    inflates a standard deviation, and 0 for a single latency."""
    if len(latencies) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(latencies, n=4)
    return (q3 - q1) / statistics.median(latencies)


def _throughputs(node) -> list[Throughput]:
    """Every throughput measurement in a result (teacher, runs, seeds, rows, vision-side latencies)."""
    if isinstance(node, Throughput):
        return [node]
    if isinstance(node, BaseModel):
        return [t for name in type(node).model_fields for t in _throughputs(getattr(node, name))]
    if isinstance(node, list | tuple):
        return [t for item in node for t in _throughputs(item)]
    return []


def spread_note(res) -> str:
    """How many of a result's measurements spread beyond SPREAD_LIMIT (empty when none was measured)."""
    spreads = [latency_spread(t.latencies_ms) for t in _throughputs(res)]
    if not spreads:
        return ""
    noisy = sum(x > SPREAD_LIMIT for x in spreads)
    what = f" Latency spread (interquartile range / median) {{}} {SPREAD_LIMIT:.0%} in"
    if not noisy:
        return f"{what.format('within')} all {len(spreads)} measurements."
    return (
        f"{what.format('above')} {noisy} of {len(spreads)} "
        f"measurements (largest {max(spreads):.0%}): a noisy machine, so read speed-ups, whose models were "
        "measured interleaved, rather than absolute samples/s."
    )


def _seed_values(frame: pd.DataFrame, by: str) -> dict[str, pd.Series]:
    """Per metric shown over seeds: its values, per group of `by` (a run's position, or a stage)."""
    metrics = ("params_total", "params_language_model", *TASKS, "overall", *KNOWLEDGE)
    return {m: summary(frame, m, by=(by,)).set_index(by)["values"] for m in metrics}


def _spread(stats: dict[str, pd.Series], metric: str, key) -> str | None:
    """mean ± std over seeds of `metric` for `key`; None where not measured (no knowledge questions)."""
    return mean_std(stats[metric][key]) if key in stats[metric].index else None


def _size_and_speed(stats: dict[str, pd.Series], key, ours: pd.DataFrame, t1, t32, lm0: float) -> list:
    """Params and LM params (mean ± std over seeds), the LM's reduction against the teacher's (`lm0`),
    samples/s at batch 1 and speed-ups over the teacher, all of the first seed's model (the only one
    measured)."""
    s1 = value(ours, "samples_per_s", 1)
    lm = stats["params_language_model"][key]
    return [
        mean_std([v / 1e6 for v in stats["params_total"][key]], exact=True),
        mean_std([v / 1e6 for v in lm], exact=True),
        _ratio(lm0, statistics.fmean(lm)),
        s1,
        _ratio(s1, t1),
        _ratio(value(ours, "samples_per_s", 32), t32),
    ]


def _teacher_row(teacher: pd.DataFrame, name: str, metrics: tuple[str, ...]) -> list:
    t1, t32 = value(teacher, "samples_per_s", 1), value(teacher, "samples_per_s", 32)
    return [
        name,
        value(teacher, "params_total") / 1e6,
        value(teacher, "params_language_model") / 1e6,
        "1.00×",
        t1,
        "1.00×" if t1 else None,
        "1.00×" if t32 else None,
        *[value(teacher, m) for m in metrics],
    ]


def _stage_table(res: CompressionResult, frame: pd.DataFrame) -> tuple[list[str], list[list]]:
    """Table 2: the teacher, then the end of every stage of the first run, each beside the paper's row."""
    headers = ["Model", *SIZE_AND_SPEED] + [t.capitalize() for t in TASKS] + ["Overall", *KNOWLEDGE.values()]
    teacher, ends = pick(frame, role="teacher"), pick(frame, role="stage", position=0)
    lm0 = value(teacher, "params_language_model")
    t1, t32 = value(teacher, "samples_per_s", 1), value(teacher, "samples_per_s", 32)
    paper, base = {r.row: r for r in res.paper}, _paper_base(res.paper)
    stage_rows = {s.table2_row for s in STAGES}
    original = next((r for r in res.paper if r.row not in stage_rows), None)
    rows = [
        _teacher_row(teacher, "Original — ours", (*TASKS, "overall", *KNOWLEDGE)),
        _paper_row(original, base, tasks=True),
    ]
    stats = _seed_values(ends, "stage")
    for end in res.runs[0].seeds[0].stage_ends or []:
        row2 = BY_NAME[end.stage].table2_row
        rows.append(
            [f"{row2} — ours", *_size_and_speed(stats, end.stage, pick(ends, stage=end.stage), t1, t32, lm0)]
            + [_spread(stats, m, end.stage) for m in (*TASKS, "overall", *KNOWLEDGE)]
        )
        rows.append(_paper_row(paper.get(row2), base, tasks=True))
    return headers, [r for r in rows if r]


def _run_table(res: CompressionResult, frame: pd.DataFrame) -> tuple[list[str], list[list]]:
    """One row per run (mean ± std over seeds), each followed by the paper's row when it has one."""
    headers = ["Model", *SIZE_AND_SPEED, "Accuracy", *KNOWLEDGE.values()]
    teacher, runs = pick(frame, role="teacher"), pick(frame, role="run")
    lm0 = value(teacher, "params_language_model")
    t1, t32 = value(teacher, "samples_per_s", 1), value(teacher, "samples_per_s", 32)
    base = _paper_base(res.paper)
    rows = [_teacher_row(teacher, "Original (teacher) — ours", ("overall", *KNOWLEDGE))]
    rows += [_paper_row(r, base, tasks=False) for r in res.paper]
    stats = _seed_values(runs, "position")
    for i, run in enumerate(res.runs):
        rows.append(
            [f"{run.label} — ours", *_size_and_speed(stats, i, pick(runs, position=i), t1, t32, lm0)]
            + [_spread(stats, m, i) for m in ("overall", *KNOWLEDGE)]
        )
        if row := _paper_row(run.spec.paper, base, tasks=False):
            rows.append(row)
    return headers, rows


def _target_note(res: CompressionResult, frame: pd.DataFrame) -> str:
    """For runs pruned towards a share of the teacher's size (Table 3's single levels): the share aimed at and
    the share reached, both of the language model's transformer-block parameters (what the paper's sizes
    count), and whether the level stopped short of the target."""
    teacher = value(pick(frame, role="teacher"), "params_lm_blocks")
    parts = []
    for i, run in enumerate(res.runs):
        target = run.spec.target_share
        if target is None or teacher is None:
            continue
        reached = statistics.fmean(values(pick(frame, role="run", position=i), "params_lm_blocks")) / teacher
        short = " (as far as this level can prune)" if reached > target + 0.005 else ""
        parts.append(f"{run.label} {target:.0%} → {reached:.0%}{short}")
    if not parts:
        return ""
    return (
        " Single-level rows are pruned towards the paper's share of the original size, counted over the "
        "language model's transformer blocks, and α does not stop them (share aimed at → reached): "
        f"{'; '.join(parts)}."
    )


def _vision_bound(res: CompressionResult) -> str:
    """The batch-1 latency of the never-pruned vision side beside the compressed model's whole latency: it
    bounds the batch-1 speed-up any language-model pruning can give."""
    measured = [x for run in res.runs for s in run.seeds[:1] for x in (s, *(s.stage_ends or []))]
    model = next((x for x in reversed(measured) if x.vision_side_latency is not None), None)
    total = model.speed(1) if model else None
    if model is None or total is None:
        return ""
    vision = model.vision_side_latency.latency_p50_ms
    return (
        f" At batch 1 the unpruned vision tower + Q-Former take {vision:.1f} ms of the compressed model's "
        f"{total.latency_p50_ms:.1f} ms."
    )


def _prefill_decode(res: CompressionResult) -> str:
    """Where measured (results from before it was are not): batch-1 prefill (vision side + prompt + the
    first token) and per-token decode latency of the teacher and of the last measured compressed model,
    which show which of the two phases pruning sped up."""
    measured = [x for run in res.runs for s in run.seeds[:1] for x in (s, *(s.stage_ends or []))]
    model = next((x for x in reversed(measured) if x.speed(1) is not None), None)
    before, after = res.teacher.speed(1), model.speed(1) if model else None
    if before is None or after is None or before.prefill_ms is None or after.prefill_ms is None:
        return ""
    decode = (
        f"; decode {before.decode_ms_per_token:.2f} → {after.decode_ms_per_token:.2f} ms per token"
        if before.decode_ms_per_token is not None and after.decode_ms_per_token is not None
        else ""
    )
    return (
        f" At batch 1, teacher → compressed: prefill (one token) {before.prefill_ms:.1f} → "
        f"{after.prefill_ms:.1f} ms{decode}."
    )


def slug(text: str) -> str:
    """A label as a file name: letters, digits and '-_.' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")


def render_compression(out_dir: Path) -> str:
    """The experiment's table (per run, or per stage for Table 2), trace CSVs, and its figures."""
    out_dir = Path(out_dir)
    res = load_result(out_dir / "result.json")
    assert isinstance(res, CompressionResult)
    exp, frame = res.experiment, result_frame(res)
    tables = {"stages": _stage_table, "runs": _run_table, "budgets": budget_table}
    headers, rows = tables[exp.table](res, frame)
    for run in res.runs:
        for s in run.seeds:
            stem = f"trace_{run.label}_seed{s.seed}" if len(res.runs) > 1 else f"trace_seed{s.seed}"
            write_trace_csv(out_dir / f"{slug(stem)}.csv", [row.model_dump() for row in s.trace])
    for name in exp.figures:
        FIGURES[name](res, frame, out_dir)
    speed = (
        f"throughput on {res.device.name}, every row measured interleaved with the teacher "
        "(first seed's model); paper: A10 samples/s. Compare speed-ups, not absolute samples/s."
        if res.measured
        else "throughput not measured for this experiment."
    )
    seeds = len(res.runs[0].seeds)
    caption = (
        f"Reproduces {exp.reproduces}. Ours: profile '{res.profile.name}', test split, "
        f"{f'mean ± std over {seeds} seeds' if seeds > 1 else '1 seed'}; {speed}{_vision_bound(res)}"
        f"{_prefill_decode(res)}{_target_note(res, frame)}"
        f"{FINAL_LM_NOTE if exp.table == 'budgets' else ''}{spread_note(res)}"
    )
    return make_table(headers, rows, caption, out_dir)


def render_public(out_dir: Path) -> str:
    """Public checkpoints beside ours: size, throughput, per-task accuracy."""
    res = load_result(Path(out_dir) / "result.json")
    assert isinstance(res, PublicResult)
    frame = result_frame(res)
    headers = ["Model", "Params (M)", "LM params (M)", "Samples/s (b=1)", "Samples/s (b=32)"]
    phases = any(r.speed(1) is not None and r.speed(1).prefill_ms is not None for r in res.rows)
    if phases:  # results measured before prefill and decode were lack them
        headers += ["Prefill b=1 (ms)", "Decode b=1 (ms/token)"]
    headers += [t.capitalize() for t in TASKS] + ["Overall"]
    rows = []
    for i, r in enumerate(res.rows):
        ours = pick(frame, position=i)
        one = r.speed(1)
        rows.append(
            [
                r.row,
                value(ours, "params_total") / 1e6,
                value(ours, "params_language_model") / 1e6,
                value(ours, "samples_per_s", 1),
                value(ours, "samples_per_s", 32),
            ]
            + ([one and one.prefill_ms, one and one.decode_ms_per_token] if phases else [])
            + [value(ours, t) for t in (*TASKS, "overall")]
        )
    where = f"on {res.device.name}" if res.measured else "not measured"
    caption = (
        f"{res.experiment.reproduces}. Profile '{res.profile.name}', test split; "
        f"throughput {where}, every model measured interleaved (each with its own tokenizer's prompt and "
        "answer length); prefill = generating one token, decode = the further tokens' mean."
        f"{spread_note(res)}"
    )
    public_figure(res, frame, Path(out_dir))
    return make_table(headers, rows, caption, out_dir)
