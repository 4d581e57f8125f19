"""Tokenizer trained on the data: exact round trip; processor saves and loads with the model."""

from transformers import Blip2Processor

from harness.data.collate import BLIP2_PROMPT, IGNORE, prompt_batch, training_batch
from harness.data.processor import build_processor
from harness.data.synth_ads import prompt_text

TEXTS = [
    prompt_text("What is the background color of this ad?") + " red",
    prompt_text('The ad title is "Big sale on pizza". What product category does this ad promote?') + " food",
] * 20


def _proc():
    return build_processor(TEXTS, vocab_size=300, image_size=32, num_query_tokens=4)


def test_tokenizer_round_trip():
    tok = _proc().tokenizer
    for text in [*TEXTS[:2], "Unseen wörds & symbols: 42%!", "  spaces  kept "]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_processor_save_load(tmp_path):
    proc = _proc()
    proc.save_pretrained(tmp_path)
    again = Blip2Processor.from_pretrained(tmp_path)
    assert again.num_query_tokens == 4
    assert again.tokenizer(TEXTS[1])["input_ids"] == proc.tokenizer(TEXTS[1])["input_ids"]
    assert again.tokenizer.convert_tokens_to_ids("<image>") == proc.tokenizer.convert_tokens_to_ids("<image>")


def test_training_and_prompt_batches_share_the_prompt():
    proc = _proc()
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    train = training_batch(proc, ["What is the background color of this ad?"], ["red"])
    prompt = prompt_batch(proc, ["What is the background color of this ad?"])
    n = prompt["input_ids"].shape[1]
    assert (train["input_ids"][0, :n] == prompt["input_ids"][0]).all()
    assert (train["input_ids"][0, :4] == image_id).all()
    labels = train["labels"][0]
    assert (labels[:n] == IGNORE).all() and labels[-1] == proc.tokenizer.eos_token_id


def test_a_processor_with_a_prompt_template_prompts_with_it_in_training_and_generation():
    """Public checkpoints are prompted as BLIP-2 was tuned ("Question: ... Answer:"), the stand-in as it was
    trained; the template is the processor's (harness/recipes/public_lmms.py sets it)."""
    proc, q = _proc(), "What is the background color of this ad?"
    own = prompt_batch(proc, [q])["input_ids"][0, 4:].tolist()
    assert own == proc.tokenizer(prompt_text(q))["input_ids"]
    proc.prompt_template = BLIP2_PROMPT
    blip2 = proc.tokenizer(f"Question: {q} Answer:")["input_ids"]
    assert prompt_batch(proc, [q])["input_ids"][0, 4:].tolist() == blip2
    train = training_batch(proc, [q], ["red"])
    assert train["input_ids"][0, 4 : 4 + len(blip2)].tolist() == blip2
    assert (train["labels"][0, : 4 + len(blip2)] == IGNORE).all()
