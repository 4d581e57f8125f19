"""Tables (and the figures they come with) from a result file alone, ours beside the paper's.

Why from the file: `python -m harness report` must be able to redo every table and figure offline, after a
change of style, with nothing recomputed. Several seeds show as mean ± std.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.pipeline import write_trace_csv
from harness.report.figures import bars_figure, sample_size_figure, trace_figures, tradeoff_figure
from harness.report.tables import make_table
from harness.stages import BY_NAME, TASKS


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: list[float], digits: int = 3, exact: bool = False) -> str | None:
    """'0.884' for one value, '0.884 ± 0.004' for several (sample std). `exact`: quantities that cannot
    vary by chance (sizes: every seed reaches the same structure) show one value when all seeds agree."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    m, s = mean_std(values)
    if s is None or (exact and s == 0):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _speed(res: dict, name: str, batch: int) -> float | None:
    return res.get("throughput", {}).get(name, {}).get(f"batch_{batch}", {}).get("samples_per_s")


def _ratio(a: float | None, b: float | None) -> str | None:
    return f"{a / b:.2f}×" if a and b else None


def _paper_base(res: dict) -> float | None:
    return next((r["a10_samples_per_s"] for r in res["paper"] if r.get("a10_samples_per_s")), None)


def _paper_row(r: dict | None, base: float | None, tasks: bool) -> list:
    if r is None:
        return []
    size = r["size_b"] * 1e3 if r.get("size_b") else None
    speed = r.get("a10_samples_per_s")
    row = [f"{r['row']} — paper", size, None, speed, _ratio(speed, base), None]
    return row + ([r.get(t) for t in TASKS] if tasks else []) + [r.get("overall")]


def render_original(out_dir: Path) -> str:
    """Table 2, row 'Original' (ours beside the paper's)."""
    res = json.loads((Path(out_dir) / "result.json").read_text())
    headers = ["Model", "Params (M)", "LM share", "Samples/s (b=1)", "Samples/s (b=32)", "Speed-up"]
    headers += [t.capitalize() for t in TASKS] + ["Overall"]
    rows, base = [], None
    for r in res["rows"]:
        speed, p = r.get("throughput", {}), r.get("parameters")
        b1 = speed.get("batch_1", {}).get("samples_per_s")
        base = base or b1
        rows.append(
            [
                f"{r['row']} — ours",
                p["total"] / 1e6 if p else None,
                p["language_model"] / p["total"] if p else None,
                b1,
                speed.get("batch_32", {}).get("samples_per_s"),
                _ratio(b1, base),
            ]
            + [r["accuracy"].get(t) for t in TASKS]
            + [r["accuracy"]["overall"]]
        )
    paper_base = _paper_base(res)
    for r in res["paper"]:
        row = _paper_row(r, paper_base, tasks=True)
        rows.append(row[:2] + [None, row[3], None, row[4]] + row[6:])
    caption = (
        f"Reproduces {res['experiment']['reproduces']}. Ours: profile '{res['profile']['name']}', "
        f"throughput on {res['device']['name']} (median, end-to-end generation); "
        "paper: AntGMM on an A10 GPU. Compare speed-ups, not absolute samples/s."
    )
    return make_table(headers, rows, caption, out_dir)


def _size_and_speed(res: dict, records: list[dict], name: str, t1: float | None, t32: float | None) -> list:
    """Params and LM params (mean ± std over seeds), samples/s at batch 1 and speed-ups over the teacher."""
    s1 = _speed(res, name, 1)
    return [
        fmt([r["parameters"]["total"] / 1e6 for r in records], exact=True),
        fmt([r["parameters"]["language_model"] / 1e6 for r in records], exact=True),
        s1,
        _ratio(s1, t1),
        _ratio(_speed(res, name, 32), t32),
    ]


def _seeds_note(res: dict) -> str:
    n = len(res["runs"][0]["seeds"])
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed"


def _stage_table(res: dict) -> tuple[list[str], list[list]]:
    """Table 2: the teacher, then the end of every stage of the first run, each beside the paper's row."""
    headers = ["Model", "Params (M)", "LM params (M)", "Samples/s (b=1)", "Speed-up (b=1)", "Speed-up (b=32)"]
    headers += [t.capitalize() for t in TASKS] + ["Overall"]
    run, t = res["runs"][0], res["teacher"]
    paper = {r["row"]: r for r in res["paper"]}
    base = _paper_base(res)
    t1, t32 = _speed(res, "teacher", 1), _speed(res, "teacher", 32)
    rows = [
        [
            "Original — ours",
            t["parameters"]["total"] / 1e6,
            t["parameters"]["language_model"] / 1e6,
            t1,
            "1.00×",
            "1.00×",
            *[t["accuracy"][k] for k in TASKS],
            t["accuracy"]["overall"],
        ],
        _paper_row(paper.get("Original AntGMM"), base, tasks=True),
    ]
    for i, end in enumerate(run["seeds"][0]["stage_ends"]):
        ends = [s["stage_ends"][i] for s in run["seeds"]]
        name = f"{run['label']} @ {end['stage']}"
        rows.append(
            [f"{BY_NAME[end['stage']].table2_row} — ours", *_size_and_speed(res, ends, name, t1, t32)]
            + [fmt([e["accuracy"][k] for e in ends]) for k in TASKS]
            + [fmt([e["accuracy"]["overall"] for e in ends])]
        )
        row = _paper_row(paper.get(BY_NAME[end["stage"]].table2_row), base, tasks=True)
        if row:
            rows.append(row)
    return headers, [r for r in rows if r]


def _run_table(res: dict) -> tuple[list[str], list[list]]:
    """One row per run (mean ± std over seeds), each followed by the paper's row when it has one."""
    headers = [
        "Model",
        "Params (M)",
        "LM params (M)",
        "Samples/s (b=1)",
        "Speed-up (b=1)",
        "Speed-up (b=32)",
        "Accuracy",
    ]
    t = res["teacher"]
    t1, t32 = _speed(res, "teacher", 1), _speed(res, "teacher", 32)
    base = _paper_base(res)
    rows = [
        [
            "Original (teacher) — ours",
            t["parameters"]["total"] / 1e6,
            t["parameters"]["language_model"] / 1e6,
            t1,
            "1.00×" if t1 else None,
            "1.00×" if t32 else None,
            t["accuracy"]["overall"],
        ]
    ]
    for r in res["paper"]:
        row = _paper_row(r, base, tasks=False)
        rows.append(row)
    for run in res["runs"]:
        s = run["seeds"]
        rows.append(
            [
                f"{run['label']} — ours",
                *_size_and_speed(res, s, run["label"], t1, t32),
                fmt([x["accuracy"]["overall"] for x in s]),
            ]
        )
        row = _paper_row(run["spec"].get("paper"), base, tasks=False)
        if row:
            rows.append(row)
    return headers, rows


def _target_note(res: dict) -> str:
    """For runs pruned towards a share of the teacher's size (Table 3's single levels): the share aimed at and
    the share reached, both of the language model's transformer-block parameters (what the paper's sizes
    count), and whether the level stopped short of the target."""
    teacher = res["teacher"]["parameters"].get("lm_blocks")
    parts = []
    for run in res["runs"]:
        target = run["spec"].get("target_share")
        if target is None or teacher is None:
            continue
        reached = statistics.fmean(s["parameters"]["lm_blocks"] for s in run["seeds"]) / teacher
        short = " (as far as this level can prune)" if reached > target + 0.005 else ""
        parts.append(f"{run['label']} {target:.0%} → {reached:.0%}{short}")
    if not parts:
        return ""
    return (
        " Single-level rows are pruned towards the paper's share of the original size, counted over the "
        "language model's transformer blocks, and α does not stop them (share aimed at → reached): "
        f"{'; '.join(parts)}."
    )


def render_compression(out_dir: Path) -> str:
    """The experiment's table (per run, or per stage for Table 2), trace CSVs, and its figures."""
    out_dir = Path(out_dir)
    res = json.loads((out_dir / "result.json").read_text())
    exp = res["experiment"]
    headers, rows = _stage_table(res) if exp["table"] == "stages" else _run_table(res)
    for run in res["runs"]:
        for s in run["seeds"]:
            stem = (
                f"trace_{run['label']}_seed{s['seed']}" if len(res["runs"]) > 1 else f"trace_seed{s['seed']}"
            )
            write_trace_csv(out_dir / f"{_slug(stem)}.csv", s["trace"])
    if "trace" in exp["figures"]:
        trace_figures(res, out_dir)
    if "bars" in exp["figures"]:
        bars_figure(res, out_dir)
    if "sample_size" in exp["figures"]:
        sample_size_figure(res, out_dir)
    if "tradeoff" in exp["figures"]:
        tradeoff_figure(res, out_dir)
    vision = res.get("vision_side_latency")
    bound = ""
    if vision and vision["model"] in vision:
        m = vision["model"]
        total = res["throughput"][m].get("batch_1", {}).get("latency_p50_ms")
        bound = (
            f" At batch 1 the unpruned vision tower + Q-Former take {vision[m]['latency_p50_ms']:.1f} ms of "
            f"the compressed model's {total:.1f} ms."
            if total
            else ""
        )
    speed = (
        f"throughput on {res['device']['name']}, every row measured interleaved with the teacher "
        "(first seed's model); paper: A10 samples/s. Compare speed-ups, not absolute samples/s."
        if "throughput" in res
        else "throughput not measured for this experiment."
    )
    caption = (
        f"Reproduces {exp['reproduces']}. Ours: profile '{res['profile']['name']}', test split, "
        f"{_seeds_note(res)}; {speed}{bound}{_target_note(res)}"
    )
    return make_table(headers, rows, caption, out_dir)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")


def render_public(out_dir: Path) -> str:
    """Public checkpoints beside ours: size, throughput, per-task accuracy."""
    res = json.loads((Path(out_dir) / "result.json").read_text())
    headers = ["Model", "Params (M)", "LM params (M)", "Samples/s (b=1)", "Samples/s (b=32)"]
    headers += [t.capitalize() for t in TASKS] + ["Overall"]
    rows = [
        [
            r["row"],
            r["parameters"]["total"] / 1e6,
            r["parameters"]["language_model"] / 1e6,
            _speed(res, r["row"], 1),
            _speed(res, r["row"], 32),
        ]
        + [r["accuracy"].get(t) for t in TASKS]
        + [r["accuracy"]["overall"]]
        for r in res["rows"]
    ]
    where = f"on {res['device']['name']}" if "throughput" in res else "not measured"
    caption = (
        f"{res['experiment']['reproduces']}. Profile '{res['profile']['name']}', test split; "
        f"throughput {where}, models sharing a tokenizer measured interleaved."
    )
    return make_table(headers, rows, caption, out_dir)


RENDERERS = {"original": render_original, "compression": render_compression, "public_lmms": render_public}
