"""Tokenizer trained on the dataset's own text, and the BLIP-2 processor that pairs it with the images.

Why train one: nothing may be downloaded, and a byte-level BPE fitted to the prompts keeps the vocabulary
(and so the embedding and lm_head) small. Saved as a `PreTrainedTokenizerFast` inside a `Blip2Processor`,
so a model directory holds everything `from_pretrained` needs.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import Blip2Processor, PreTrainedTokenizerFast

from harness.data.synth_ads import prompt_text

PAD, BOS, EOS, IMAGE, UNK = "<pad>", "<s>", "</s>", "<image>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE, UNK]


def _image_processor_cls():
    """BLIP's image processor; the PIL backend avoids a torchvision dependency."""
    try:
        from transformers import BlipImageProcessorPil

        return BlipImageProcessorPil
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor

        return BlipImageProcessor


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE; encodes any text (no unknowns) and decodes it back exactly."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    return fast


def dataset_texts(rows: Iterable[dict]) -> Iterable[str]:
    """The text a model sees: prompt and answer of every training sample."""
    for row in rows:
        yield f"{prompt_text(row['question'])} {row['answer']}"


def build_processor(
    texts: Iterable[str], vocab_size: int, image_size: int, num_query_tokens: int
) -> Blip2Processor:
    tokenizer = train_tokenizer(texts, vocab_size)
    image_processor = _image_processor_cls()(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )
    return Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens
    )
