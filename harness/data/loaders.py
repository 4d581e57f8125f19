"""Datasets as `datasets.DatasetDict`s with MAAD's schema (image, task, question, answer).

SynthAd is generated and cached on disk under a hash of the generator version, its parameters, the seed and
the split sizes. A MAAD-format folder (JSONL lines of image path, task, question, answer) loads into the
same schema, so the real MAAD drops in once it is released.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from harness.cache import atomic_dir, content_hash
from harness.data.synth_ads import TASKS, SynthAdParams, generate_sample, params_dict

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
        **{f"image_{t}": datasets.Value("string") for t in TASKS},
    }
)


def synth_ads_key(params: SynthAdParams, sizes: dict[str, int], seed: int) -> dict:
    """Everything that determines the dataset's bytes."""
    return {"params": params_dict(params), "sizes": dict(sizes), "seed": seed}


def load_synth_ads(
    params: SynthAdParams, sizes: dict[str, int], seed: int, cache_dir: Path, progress: bool = True
) -> datasets.DatasetDict:
    """Generate SynthAd (or reuse the cached copy) with the given split sizes."""
    unknown = set(sizes) - set(SPLIT_IDS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; allowed: {sorted(SPLIT_IDS)}")
    key = synth_ads_key(params, sizes, seed)
    target = Path(cache_dir) / "datasets" / f"synth_ads-{content_hash(key)}"
    if not (target / "dataset_dict.json").exists():
        splits = {}
        for split, n in sizes.items():
            rows = [
                generate_sample(seed, SPLIT_IDS[split], i, params)
                for i in tqdm(range(n), desc=f"SynthAd {split}", disable=not progress, leave=False)
            ]
            splits[split] = datasets.Dataset.from_list(rows, features=FEATURES)
        with atomic_dir(target) as tmp:
            datasets.DatasetDict(splits).save_to_disk(str(tmp))
            (tmp / "key.json").write_text(json.dumps(key, indent=2))
    return datasets.load_from_disk(str(target))


class MaadFormatError(ValueError):
    """A MAAD-format file has a line that cannot be used; the message names the file and line."""


def load_maad_folder(folder: Path) -> datasets.DatasetDict:
    """Load `<folder>/{train,validation,test}.jsonl`; image paths are relative to the folder."""
    folder = Path(folder)
    files = {split: folder / f"{split}.jsonl" for split in SPLIT_IDS if (folder / f"{split}.jsonl").exists()}
    if not files:
        raise FileNotFoundError(f"{folder}: no train.jsonl, validation.jsonl or test.jsonl found")
    splits = {}
    for split, path in files.items():
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
            image = folder / row["image"]
            if not image.is_file():
                raise MaadFormatError(f"{path}:{lineno}: image file {image} does not exist")
            rows.append(
                {
                    "id": str(row.get("id", f"{split}-{lineno}")),
                    "image": str(image),
                    "task": row["task"],
                    "question": row["question"],
                    "answer": row["answer"],
                    "clean_answer": row["answer"],
                    "label_noise": False,
                    "title": str(row.get("title", "")),
                    "title_kind": "",
                    "icon_visible": True,
                    # a MAAD row annotates one task of its image; the others are unknown ("")
                    **{f"image_{t}": (row["answer"] if t == row["task"] else "") for t in TASKS},
                }
            )
        splits[split] = datasets.Dataset.from_list(rows, features=FEATURES)
    return datasets.DatasetDict(splits)
