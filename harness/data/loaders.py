"""Datasets as `datasets.DatasetDict`s with MAAD's schema (image, task, question, answer).

SynthAd is generated and cached on disk under a hash of the generator version, its parameters, the seed and
the split sizes. A MAAD-format folder (JSONL lines of image path, task, question, answer) loads into the
same schema, so the real MAAD drops in once it is released.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

import datasets
from PIL import Image
from tqdm.auto import tqdm

from harness import parallel
from harness.cache import (
    atomic_dir,
    content_hash,
    entry_lock,
    usable,
    verify_manifest,
    write_manifest,
)
from harness.config.profile import SynthAdParams
from harness.config.vocabulary import TASKS
from harness.data.synth_ads import generate_sample, params_dict

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
MAAD_FIELDS = ("image", "task", "question", "answer")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "task": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "clean_answer": datasets.Value("string"),
        "label_noise": datasets.Value("bool"),
        "title": datasets.Value("string"),
        "title_kind": datasets.Value("string"),
        "icon_visible": datasets.Value("bool"),
        "advertiser": datasets.Value("string"),
        "knowledge": datasets.Value("bool"),
        "knowledge_group": datasets.Value("string"),
        **{f"image_{t}": datasets.Value("string") for t in TASKS},
    }
)


def synth_ads_key(params: SynthAdParams, sizes: dict[str, int], seed: int) -> dict:
    """Everything that determines the dataset's bytes."""
    return {"params": params_dict(params), "sizes": dict(sizes), "seed": seed}


def knowledge_group(row: dict, seen: set[str]) -> str:
    """ "seen" / "unseen": a knowledge question about an advertiser that D_d (the train split) does / does not
    name; "" for any other question. This is how much of the teacher's knowledge D_d could re-teach."""
    if not row["knowledge"]:
        return ""
    return "seen" if row["advertiser"] in seen else "unseen"


def load_synth_ads(
    params: SynthAdParams, sizes: dict[str, int], seed: int, cache_dir: Path, progress: bool = True
) -> datasets.DatasetDict:
    """Generate SynthAd (or reuse the cached copy) with the given split sizes."""
    unknown = set(sizes) - set(SPLIT_IDS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; allowed: {sorted(SPLIT_IDS)}")
    key = synth_ads_key(params, sizes, seed)
    target = Path(cache_dir) / "datasets" / f"synth_ads-{content_hash(key)}"
    with entry_lock(target):  # a second process waits for the first's copy
        cached = target.is_dir() and usable(target, verify_manifest)
        parallel.barrier()  # under accelerate launch: every process decided before the main one writes
        if not cached:
            rows = {
                split: [
                    generate_sample(seed, SPLIT_IDS[split], i, params)
                    for i in tqdm(range(n), desc=f"SynthAd {split}", disable=not progress, leave=False)
                ]
                for split, n in sizes.items()
            }
            seen = {r["advertiser"] for r in rows.get("train", []) if r["knowledge"]}
            splits = {
                split: datasets.Dataset.from_list(
                    [{**r, "knowledge_group": knowledge_group(r, seen)} for r in split_rows],
                    features=FEATURES,
                )
                for split, split_rows in rows.items()
            }
            with atomic_dir(target) as tmp:
                datasets.DatasetDict(splits).save_to_disk(str(tmp))
                (tmp / "key.json").write_text(json.dumps(key, indent=2))
                write_manifest(tmp)
    return datasets.load_from_disk(str(target))


class MaadFormatError(ValueError):
    """A MAAD-format folder that cannot be used; the message names the file (and line)."""


def _read_split(folder: Path, split: str) -> list[dict]:
    """The rows of `<folder>/<split>.jsonl`, every line checked: a JSON object, the four fields as strings, a
    known task, an image that exists and decodes (each image opened once)."""
    path = folder / f"{split}.jsonl"
    rows, images = [], {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise MaadFormatError(f"{path}: not UTF-8 text (byte {e.start})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise MaadFormatError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise MaadFormatError(f"{path}:{lineno}: expected a JSON object with keys {MAAD_FIELDS}")
        missing = [k for k in MAAD_FIELDS if not isinstance(row.get(k), str) or not row.get(k)]
        if missing:
            raise MaadFormatError(f"{path}:{lineno}: missing or non-string field(s) {missing}")
        if row["task"] not in TASKS:
            raise MaadFormatError(
                f"{path}:{lineno}: unknown task '{row['task']}'; allowed: {', '.join(TASKS)}"
            )
        image = folder / row["image"]
        if Path(row["image"]).is_absolute() or not image.resolve().is_relative_to(folder.resolve()):
            raise MaadFormatError(
                f"{path}:{lineno}: image path {row['image']} must be relative and inside {folder}"
            )
        if image not in images:
            if not image.is_file():
                raise MaadFormatError(f"{path}:{lineno}: image file {image} does not exist")
            try:
                with Image.open(image) as im:
                    im.load()
            except (OSError, Image.DecompressionBombError) as e:
                raise MaadFormatError(f"{path}:{lineno}: image {image} cannot be read ({e})") from None
            images[image] = lineno
        rows.append({**row, "_line": lineno})
    return rows


@functools.lru_cache(maxsize=4)
def _checked(folder: str, signature: tuple) -> dict[str, list[dict]]:
    """Every split read and checked once per process for a given state of its files (`signature`)."""
    root = Path(folder)
    splits = {split: _read_split(root, split) for split in SPLIT_IDS}
    for split, rows in splits.items():
        counts = Counter(r["task"] for r in rows)
        absent = [t for t in TASKS if not counts[t]]
        if absent:
            coverage = ", ".join(f"{t} {counts[t]}" for t in TASKS)
            raise MaadFormatError(
                f"{root / f'{split}.jsonl'}: no sample of task(s) {', '.join(absent)} "
                f"(coverage: {coverage}); every split needs all five tasks (the teacher's probes and the "
                "per-task accuracy use them)"
            )
    return splits


def _signature(folder: Path) -> tuple:
    """What identifies the split files' state: their sizes and modification times."""
    return tuple(
        (s, (folder / f"{s}.jsonl").stat().st_size, (folder / f"{s}.jsonl").stat().st_mtime_ns)
        for s in SPLIT_IDS
    )


def _rows(folder: Path) -> dict[str, list[dict]]:
    """Every split's checked rows: train, validation and test present, every line valid, every task known
    and covered in every split, every image readable; else a MaadFormatError naming the file and line."""
    absent = [f"{s}.jsonl" for s in SPLIT_IDS if not (folder / f"{s}.jsonl").is_file()]
    if absent:
        raise MaadFormatError(f"{folder}: missing {', '.join(absent)} (needs train, validation and test)")
    return _checked(str(folder.resolve()), _signature(folder))


def check_maad_folder(folder: Path) -> dict[str, dict[str, int]]:
    """Check a MAAD-format folder before any work (see `_rows`). Returns each split's samples per task."""
    return {split: dict(Counter(r["task"] for r in rows)) for split, rows in _rows(Path(folder)).items()}


def maad_files(folder: Path) -> list[Path]:
    """The files a MAAD-format folder's content consists of: the split files and every image they name."""
    folder = Path(folder)
    images = {folder / r["image"] for rows in _rows(folder).values() for r in rows}
    return [folder / f"{s}.jsonl" for s in SPLIT_IDS] + sorted(images)


def load_maad_folder(folder: Path) -> datasets.DatasetDict:
    """Load `<folder>/{train,validation,test}.jsonl` (checked as by `check_maad_folder`); image paths are
    relative to the folder."""
    folder = Path(folder)
    splits = {}
    for split, rows in _rows(folder).items():
        records = [
            {
                "id": str(row.get("id", f"{split}-{row['_line']}")),
                "image": str(folder / row["image"]),
                "task": row["task"],
                "question": row["question"],
                "answer": row["answer"],
                "clean_answer": row["answer"],
                "label_noise": False,
                "title": str(row.get("title", "")),
                "title_kind": "",
                "icon_visible": True,
                "advertiser": "",
                "knowledge": False,
                "knowledge_group": "",
                # a MAAD row annotates one task of its image; the others are unknown ("")
                **{f"image_{t}": (row["answer"] if t == row["task"] else "") for t in TASKS},
            }
            for row in rows
        ]
        splits[split] = datasets.Dataset.from_list(records, features=FEATURES)
    return datasets.DatasetDict(splits)
