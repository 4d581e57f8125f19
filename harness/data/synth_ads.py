"""SynthAd: a procedurally generated stand-in for the unreleased MAAD dataset.

Each image is a small advertisement rendered with PIL. Every image carries all five attributes of MAAD's
tasks (background colour, manifestation, content, logo, style); each sample asks about one of them. The
generator is deterministic given its parameters (one RNG per sample, seeded by (seed, split, index)), so the
same parameters always give the same bytes. Difficulty comes from nuisance (noise, jitter, occluders, near
colours) and from an explicit, documented share of ambiguous labels, so that a good model lands near the
paper's ~0.93 instead of 1.0. See data_cards/synth_ads.md.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from harness.config.profile import SynthAdParams
from harness.config.vocabulary import TASKS
from harness.data.catalogue import (
    CORPUS_STREAM,
    FACT_STATEMENTS,
    KNOWLEDGE_QUESTIONS,
    Catalogue,
    catalogue,
)

GENERATOR_VERSION = "synth_ads-5"
TRAIN_SPLIT = 0  # split id of the training split (harness/data/loaders.py SPLIT_IDS)


COLORS = {
    "red": (214, 48, 49),
    "orange": (240, 140, 30),
    "yellow": (238, 212, 48),
    "green": (46, 160, 67),
    "blue": (40, 92, 210),
    "purple": (128, 62, 182),
    "pink": (240, 130, 184),
    "gray": (128, 128, 128),
}
MANIFESTATIONS = ("banner", "poster", "coupon", "grid")
CONTENTS = ("food", "finance", "travel", "game", "fashion", "electronics")
LOGOS = ("none", "ant", "leaf", "wave")
STYLES = ("flat", "gradient", "striped", "dotted")

LABELS: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "manifestation": MANIFESTATIONS,
    "content": CONTENTS,
    "logo": LOGOS,
    "style": STYLES,
}

QUESTIONS = {
    "color": ("What is the background color of this ad?", "Which color is the background of the ad?"),
    "manifestation": ("What is the form of this ad?", "How is this ad presented?"),
    "content": (
        'The ad title is "{title}". What product category does this ad promote?',
        'Title: "{title}". Which category is advertised?',
    ),
    "logo": ("Which brand logo appears in this ad?", "Which logo does the ad show?"),
    "style": ("What is the visual style of this ad?", "Describe the design style of the ad."),
}

# Title words: each category has its own words; some words are shared by two categories (ambiguous titles).
TITLE_WORDS = {
    "food": ("pizza", "noodles", "fresh fruit", "coffee", "snacks"),
    "finance": ("savings", "loans", "insurance", "credit card", "funds"),
    "travel": ("flights", "hotels", "beach trips", "train tickets", "tours"),
    "game": ("arcade", "puzzles", "mobile game", "esports", "quests"),
    "fashion": ("sneakers", "dresses", "handbags", "jackets", "watches"),
    "electronics": ("laptops", "phones", "headphones", "cameras", "tablets"),
}
AMBIGUOUS_WORDS = {
    ("food", "electronics"): ("apple deals", "blackberry"),
    ("finance", "game"): ("gold coins", "reward points"),
    ("travel", "fashion"): ("summer collection", "weekend getaway look"),
    ("fashion", "electronics"): ("smart watches", "wearables"),
    ("food", "travel"): ("street food tours", "wine country"),
    ("finance", "travel"): ("travel cards", "miles"),
}
TITLE_TEMPLATES = ("Big sale on {w}", "{w} you will love", "Best {w} today", "Discover {w}", "New {w} offers")


def _icon(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill) -> None:
    """Product icon: one shape per content category; 'box' is the generic, uninformative product."""
    if kind == "food":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "finance":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif kind == "travel":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif kind == "game":
        w = r / 2.6
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif kind == "fashion":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r / 2.5)))
    elif kind == "electronics":
        draw.rectangle([cx - r * 0.55, cy - r, cx + r * 0.55, cy + r], fill=fill)
    else:  # generic box
        draw.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], outline=fill, width=2)
        draw.line([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=fill, width=1)


def _logo(draw: ImageDraw.ImageDraw, kind: str, x: int, y: int, s: int) -> None:
    """Brand logo: a white badge with a dark mark (vertical bar, horizontal bar, or X)."""
    draw.rectangle([x, y, x + s, y + s], fill=(250, 250, 250))
    m, c, dark = 2, s / 2, (20, 20, 20)
    if kind == "ant":
        draw.rectangle([x + c - 1.5, y + m, x + c + 1.5, y + s - m], fill=dark)
    elif kind == "leaf":
        draw.rectangle([x + m, y + c - 1.5, x + s - m, y + c + 1.5], fill=dark)
    elif kind == "wave":
        draw.line([x + m, y + m, x + s - m, y + s - m], fill=dark, width=2)
        draw.line([x + m, y + s - m, x + s - m, y + m], fill=dark, width=2)


def _background(rng: np.random.Generator, rgb: np.ndarray, style: str, size: int) -> np.ndarray:
    """Background of the ad's colour, textured by its style; the mean stays near the class colour."""
    img = np.broadcast_to(rgb, (size, size, 3)).astype(np.float32).copy()
    yy, xx = np.mgrid[0:size, 0:size]
    if style == "gradient":
        ramp = 0.72 + 0.5 * (yy / (size - 1)) if rng.random() < 0.5 else 0.72 + 0.5 * (xx / (size - 1))
        img *= ramp[..., None]
    elif style == "striped":
        period = int(rng.integers(6, 9))
        stripes = ((xx + yy + int(rng.integers(0, period))) // (period // 2)) % 2
        img *= np.where(stripes == 1, 0.75, 1.15)[..., None]
    elif style == "dotted":
        period = int(rng.integers(6, 8))
        off = int(rng.integers(0, period))
        dots = (((xx + off) % period) < 2) & (((yy + off) % period) < 2)
        img[dots] = 255.0 - 0.35 * img[dots]
    return img


def _title(rng: np.random.Generator, content: str, icon_visible: bool, p: SynthAdParams) -> tuple[str, str]:
    """The ad title and its kind (clear / ambiguous / misleading)."""
    u = rng.random()
    misleading = p.misleading_title_prob if icon_visible else 0.0
    if u < misleading:
        other = [c for c in CONTENTS if c != content]
        words, kind = TITLE_WORDS[other[int(rng.integers(len(other)))]], "misleading"
    elif u < misleading + p.ambiguous_title_prob:
        pairs = [pair for pair in AMBIGUOUS_WORDS if content in pair]
        words, kind = AMBIGUOUS_WORDS[pairs[int(rng.integers(len(pairs)))]], "ambiguous"
    else:
        words, kind = TITLE_WORDS[content], "clear"
    word = words[int(rng.integers(len(words)))]
    template = TITLE_TEMPLATES[int(rng.integers(len(TITLE_TEMPLATES)))]
    return template.format(w=word), kind


def render_ad(
    rng: np.random.Generator, attrs: dict[str, str], icon_visible: bool, p: SynthAdParams
) -> Image.Image:
    """Draw one advertisement with the given clean attributes."""
    s = p.image_size
    base = np.array(COLORS[attrs["color"]], dtype=np.float32)
    rgb = np.clip(base + rng.integers(-p.color_jitter, p.color_jitter + 1, size=3), 0, 255)
    img = Image.fromarray(np.clip(_background(rng, rgb, attrs["style"], s), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    lum = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]
    ink = (255, 255, 255) if lum < 150 else (25, 25, 25)
    kind = attrs["content"] if icon_visible else "box"
    u = s / 64.0
    jx, jy = (float(v) * u for v in rng.integers(-4, 5, size=2))
    form = attrs["manifestation"]
    if form == "banner":  # a wide text band and a small product icon
        y0 = s * 0.62 + jy
        draw.rectangle([2 * u, y0, s - 2 * u, y0 + 14 * u], fill=(245, 245, 245))
        for k in range(2):
            draw.line(
                [6 * u, y0 + (4 + 5 * k) * u, s * 0.7, y0 + (4 + 5 * k) * u], fill=(60, 60, 60), width=2
            )
        _icon(draw, kind, s * 0.5 + jx, s * 0.3 + jy / 2, 11 * u * rng.uniform(0.9, 1.1), ink)
    elif form == "poster":  # one big product icon
        _icon(draw, kind, s / 2 + jx, s / 2 + jy, 17 * u * rng.uniform(0.85, 1.1), ink)
    elif form == "coupon":  # dashed border, small icon
        for t in range(0, s, int(6 * u)):
            for a, b in (((t, 3 * u), (t + 3 * u, 3 * u)), ((t, s - 4 * u), (t + 3 * u, s - 4 * u))):
                draw.line([a, b], fill=ink, width=2)
            for a, b in (((3 * u, t), (3 * u, t + 3 * u)), ((s - 4 * u, t), (s - 4 * u, t + 3 * u))):
                draw.line([a, b], fill=ink, width=2)
        _icon(draw, kind, s / 2 + jx / 2, s / 2 + jy / 2, 13 * u * rng.uniform(0.9, 1.1), ink)
    else:  # grid of four small icons
        for gx in (0.3, 0.7):
            for gy in (0.3, 0.7):
                _icon(draw, kind, s * gx + jx / 4, s * gy + jy / 4, 9 * u, ink)
    if attrs["logo"] != "none":
        ls = int(11 * u)
        corner = int(rng.integers(4))
        x = int(2 * u) if corner in (0, 2) else s - ls - int(3 * u)
        y = int(2 * u) if corner in (0, 1) else s - ls - int(3 * u)
        _logo(draw, attrs["logo"], x, y, ls)
    if rng.random() < p.occluder_prob:
        ox, oy = (int(v) for v in rng.integers(0, s - 8 * u, size=2))
        ow, oh = (int(v) for v in rng.integers(int(4 * u), int(10 * u) + 1, size=2))
        draw.rectangle([ox, oy, ox + ow, oy + oh], fill=tuple(int(v) for v in rng.integers(90, 170, size=3)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, p.noise_std, size=(s, s, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def prompt_text(question: str) -> str:
    """The paper's prompt form; the image's query tokens are placed before it by the processor."""
    return f"### Human: {question} ### Assistant:"


def ads_catalogue(seed: int, p: SynthAdParams) -> Catalogue:
    """The advertiser catalogue of a dataset seed and these knobs."""
    return catalogue(seed, p.catalogue_size, p.zipf_exponent, CONTENTS)


def pretraining_corpus(seed: int, p: SynthAdParams, mentions: int) -> list[str]:
    """The teacher's text-only pretraining pool: every advertiser `mentions` times, in prose and in the
    knowledge questions' prompt form, shuffled. Every advertiser gets the same count: a reference corpus,
    unlike the ads, is not skewed to the popular ones."""
    cat = ads_catalogue(seed, p)
    rng = np.random.default_rng([seed, CORPUS_STREAM])
    forms = [*FACT_STATEMENTS, *(f"{prompt_text(q)} {{category}}" for q in KNOWLEDGE_QUESTIONS)]
    texts = [
        forms[int(f)].format(advertiser=name, category=category)
        for name, category in zip(cat.names, cat.categories, strict=True)
        for f in rng.integers(len(forms), size=mentions)
    ]
    return [texts[i] for i in rng.permutation(len(texts))]


def catalogue_questions(seed: int, p: SynthAdParams) -> list[tuple[str, str]]:
    """(question, category): every knowledge question about every advertiser of the catalogue, in the form
    a SynthAd sample asks it (the teacher's multimodal replay, harness/recipes/teacher.py)."""
    cat = ads_catalogue(seed, p)
    return [
        (q.format(advertiser=name), category)
        for name, category in zip(cat.names, cat.categories, strict=True)
        for q in KNOWLEDGE_QUESTIONS
    ]


def generate_sample(seed: int, split_id: int, index: int, p: SynthAdParams) -> dict:
    """One sample: the image, the task asked, its question, its (possibly noisy) answer and metadata."""
    rng = np.random.default_rng([seed, split_id, index])
    attrs = {task: LABELS[task][int(rng.integers(len(LABELS[task])))] for task in TASKS}
    task = TASKS[index % len(TASKS)]
    advertiser = ""
    knowledge = task == "content" and p.catalogue_size > 0 and bool(rng.random() < p.knowledge_prob)
    if knowledge:  # the advertiser decides the category; the image shows a generic box, the prompt no title
        cat = ads_catalogue(seed, p)
        a = cat.draw(rng, uniform=split_id != TRAIN_SPLIT)
        advertiser, attrs["content"] = cat.names[a], cat.categories[a]
    icon_visible = not knowledge and bool(rng.random() >= p.icon_hidden_prob)
    title, title_kind = ("", "none") if knowledge else _title(rng, attrs["content"], icon_visible, p)
    image = render_ad(rng, attrs, icon_visible, p)
    if knowledge:
        template = KNOWLEDGE_QUESTIONS[int(rng.integers(len(KNOWLEDGE_QUESTIONS)))]
        question = template.format(advertiser=advertiser)
    else:
        template = QUESTIONS[task][int(rng.integers(len(QUESTIONS[task])))]
        question = template.format(title=title)
    answer = attrs[task]
    noisy = bool(rng.random() < p.label_noise)
    if noisy:
        answer = LABELS[task][int(rng.integers(len(LABELS[task])))]
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return {
        "id": f"{split_id}-{index:06d}",
        "image": {"bytes": buf.getvalue(), "path": None},
        "task": task,
        "question": question,
        "answer": answer,
        "clean_answer": attrs[task],
        "label_noise": noisy,
        "title": title,
        "title_kind": title_kind,
        "icon_visible": icon_visible,
        "advertiser": advertiser,
        "knowledge": knowledge,
        # what the image itself shows, for every task: the encoder's pre-training annotations (stage 1)
        **{f"image_{t}": attrs[t] for t in TASKS if t != "content"},
        "image_content": attrs["content"] if icon_visible else "unknown",
    }


def params_dict(p: SynthAdParams) -> dict:
    return {"generator_version": GENERATOR_VERSION, **p.model_dump()}
