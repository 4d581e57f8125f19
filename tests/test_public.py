"""Public BLIP-2-family checkpoints from disk (tiny random BLIP-2-OPT and InstructBLIP-Llama): load, evaluate,
compress, save_pretrained, from_pretrained; and clear refusals."""

import json
import math

import pytest
import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    GPT2Config,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    OPTConfig,
    Qwen2Config,
    T5Config,
)

from harness.config.experiment import CompressionRun, RunPlan
from harness.config.loading import load_profile
from harness.data.collate import pixel_values, prompt_batch, qformer_kwargs
from harness.distill.loop import distill
from harness.evaluate import evaluate
from harness.models.public import CheckpointError, load_lmm
from harness.models.stand_in import new_model
from harness.objectives import teacher_batches
from harness.pipeline import run_compression, structure
from harness.prune.step import prune_step, structures_to_remove
from harness.prune.structures import PruningError
from harness.store import get_dataset, step_model

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
QFORMER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "encoder_hidden_size": 32,
    "cross_attention_frequency": 1,
    "max_position_embeddings": 128,
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    prof = load_profile("smoke")
    data = get_dataset(prof, tmp_path_factory.mktemp("cache"), progress=False)
    _, processor = new_model(prof, data)  # a processor fitted on SynthAd, as a fine-tune would use
    return prof, data, processor


def _special(tok) -> dict:
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def _save(model, processor, folder):
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def blip2_opt(processor, folder):
    tok = processor.tokenizer
    text = OPTConfig(
        vocab_size=len(tok),
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=128,
        **_special(tok),
    )
    return _blip2(processor, folder, text.to_dict())


def _blip2(processor, folder, text: dict):
    """A tiny random BLIP-2 around the language model config `text`, saved with `processor`."""
    config = Blip2Config(
        vision_config=VISION,
        qformer_config=QFORMER,
        text_config=text,
        num_query_tokens=processor.num_query_tokens,
        image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    return _save(Blip2ForConditionalGeneration(config), processor, folder)


def blip2_t5(processor, folder, gated: bool = True):
    tok = processor.tokenizer
    text = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        d_kv=8,
        feed_forward_proj="gated-gelu" if gated else "relu",
        decoder_start_token_id=tok.pad_token_id,
        **_special(tok),
    )
    return _blip2(processor, folder, text.to_dict())


def instructblip_llama(processor, folder):
    tok = processor.tokenizer
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        **_special(tok),
    )
    config = InstructBlipConfig(
        vision_config=VISION,
        qformer_config={**QFORMER, "vocab_size": len(tok)},
        text_config=text.to_dict(),
        num_query_tokens=processor.num_query_tokens,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    proc = InstructBlipProcessor(
        image_processor=processor.image_processor,
        tokenizer=tok,
        qformer_tokenizer=tok,
        num_query_tokens=processor.num_query_tokens,
    )
    return _save(InstructBlipForConditionalGeneration(config), proc, folder)


def _logits(model, processor, split):
    """Logits on four samples; a T5's for a fixed decoder input."""
    b = prompt_batch(processor, split["question"][:4])
    t5 = model.config.text_config.model_type == "t5"
    decoder = {"decoder_input_ids": torch.tensor([[processor.tokenizer.pad_token_id, 5, 9, 11]] * 4)}
    with torch.no_grad():
        return model(
            pixel_values=pixel_values(processor, split["image"][:4]),
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            **qformer_kwargs(b),
            **(decoder if t5 else {}),
        ).logits


@pytest.mark.parametrize(
    "build, stages, cls",
    [
        (blip2_opt, ["block", "ffn"], Blip2ForConditionalGeneration),
        (instructblip_llama, ["block", "ffn", "attention", "hidden"], InstructBlipForConditionalGeneration),
        (blip2_t5, ["block", "ffn", "attention", "hidden"], Blip2ForConditionalGeneration),
    ],
)
def test_load_evaluate_compress_and_round_trip(smoke, tmp_path, build, stages, cls):
    prof, data, base_processor = smoke
    model, processor = load_lmm(build(base_processor, tmp_path / "ckpt"))
    assert isinstance(model, cls)
    acc = evaluate(model, processor, data["test"], 50)
    assert 0.0 <= acc["overall"] <= 1.0 and set(acc["per_task"]) == {
        "color",
        "manifestation",
        "content",
        "logo",
        "style",
    }
    d_d = teacher_batches(model, processor, data["train"].select(range(64)), 32)
    assert ("qformer_input_ids" in d_d[0]) == (cls is InstructBlipForConditionalGeneration)
    width = model.config.text_config.hidden_size
    c = prof.compression.model_copy(
        update={
            "n_b": 1,
            "N_blocks": 1,
            "n_h_ffn": 16,
            "N_ffn": 32,
            "n_h_att": 16,
            "N_att": 16,
            "n_d": 8,
            "N_input": 8,
            "epochs": 1,
        }
    )
    cfg = RunPlan(
        run=CompressionRun(label="public", stages=stages),
        compression=c,
        seed=0,
        eval_batch_size=50,
        maxima={"block": 1, "ffn": 32, "attention": 16, "hidden": 8},
        use_alpha=True,
        epochs=c.epochs,
        total_epochs=0,
    )
    state = run_compression(
        model, processor, data["validation"], d_d, d_d, cfg, tmp_path / "run", progress=False
    )
    assert [t["stage"] for t in state["trace"]] == [s for s in stages for _ in range(1 if s != "ffn" else 2)]
    student = step_model(tmp_path / "run")
    assert isinstance(student, cls)
    assert student.config.text_config.num_hidden_layers == 1
    if "hidden" in stages:
        assert student.config.text_config.hidden_size == width - 8
    student.save_pretrained(tmp_path / "out")
    processor.save_pretrained(tmp_path / "out")
    again, again_proc = load_lmm(tmp_path / "out")
    torch.testing.assert_close(
        _logits(again, again_proc, data["test"]), _logits(student, processor, data["test"])
    )


def test_opt_refuses_heads_and_hidden_with_the_reason(smoke, tmp_path):
    _, _, base_processor = smoke
    model, _ = load_lmm(blip2_opt(base_processor, tmp_path / "opt"))
    for level, amount in (("attention", 16), ("hidden", 8)):
        with pytest.raises(PruningError, match="OPT"):
            structures_to_remove(model, level, amount)


def test_refused_checkpoints_name_the_folder_and_what_is_supported(smoke, tmp_path):
    _, _, base_processor = smoke
    tok = base_processor.tokenizer
    gpt2 = Blip2Config(
        vision_config=VISION,
        qformer_config=QFORMER,
        text_config=GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2).to_dict(),
        num_query_tokens=4,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(gpt2.to_dict()))
    with pytest.raises(
        CheckpointError,
        match=r"gpt2: language model 'gpt2' is not supported; supported: llama, mistral, qwen2, opt, t5",
    ):
        load_lmm(folder)
    plain = tmp_path / "llama"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps(LlamaConfig(hidden_size=32).to_dict()))
    with pytest.raises(
        CheckpointError, match="model_type 'llama' is not a BLIP-2-family model; supported: blip-2"
    ):
        load_lmm(plain)
    with pytest.raises(CheckpointError, match="no such folder"):
        load_lmm(tmp_path / "missing")


def test_public_lmms_experiment_adds_a_checkpoint_in_one_line(smoke, tmp_path):
    from harness.commands.run import run_experiment

    _, _, base_processor = smoke
    ckpt = blip2_opt(base_processor, tmp_path / "blip2-opt")
    exp = tmp_path / "public.yaml"
    exp.write_text(
        "name: public\nreproduces: Public LMMs\nkind: public_lmms\ndescription: x\nmodels:\n"
        "  - {name: Stand-in teacher, checkpoint: teacher}\n"
        f"  - {{name: Tiny BLIP-2 OPT, checkpoint: {ckpt}, fine_tune_epochs: 1, compress: true,\n"
        "     compression: {n_b: 1, N_blocks: 1, n_h_ffn: 16, N_ffn: 32}}\n"
    )
    out, how = run_experiment(exp, "smoke", tmp_path / "results", tmp_path / "cache", False, progress=False)
    res = json.loads((out / "result.json").read_text())
    names = [r["row"] for r in res["rows"]]
    assert names == [
        "Stand-in teacher (as is)",
        "Tiny BLIP-2 OPT (zero-shot)",
        "Tiny BLIP-2 OPT (fine-tuned 1 ep)",
        "Tiny BLIP-2 OPT (compressed (block→ffn))",
    ]
    small = res["rows"][-1]["structure"]
    assert small["num_hidden_layers"] == 1 and small["intermediate_size"] == 64 - 32
    assert all([t["batch_size"] for t in r["throughput"]] == [1, 32] for r in res["rows"])  # on every row
    assert "Tiny BLIP-2 OPT (fine-tuned 1 ep)" in (out / "table.md").read_text()
    # the compressed model's folder is a whole checkpoint: model and processor
    last = sorted((tmp_path / "cache" / "compression").glob("public-*/steps/step_*"))[-1]
    model, processor = load_lmm(last)
    assert structure(model)["num_hidden_layers"] == 1
    assert processor.tokenizer.get_vocab() == base_processor.tokenizer.get_vocab()


def test_bad_public_entries_fail_before_any_work(smoke, tmp_path):
    """The schema's checks, then harness/preflight.py's (the checkpoint's config, the schedule against it)."""
    from harness.config.files import SpecError
    from harness.preflight import checked

    _, _, base_processor = smoke
    ckpt = blip2_opt(base_processor, tmp_path / "blip2-opt")
    exp = tmp_path / "public.yaml"
    for entry, message in [
        ("{name: x, checkpoint: /nowhere}", "field 'models.0.checkpoint': /nowhere is not a save_pretrained"),
        (f"{{name: x, checkpoint: {ckpt}, compression: {{n_hh: 1}}}}", "field 'models.0.compression.n_hh'"),
        # checked against the checkpoint's own config (2 blocks, FFN 64), before any work
        (
            f"{{name: x, checkpoint: {ckpt}, compress: true, compression: {{N_blocks: 40, N_ffn: 32}}}}",
            r"compression impossible on .*blip2-opt \(1 problem\(s\)\)\n  - field 'models.0.compression"
            r".N_blocks': 40 is impossible here \(block: cannot remove 40 from language_model, which has 2",
        ),
        (
            f"{{name: x, checkpoint: {ckpt}, compress: true, stages: [block, attention]}}",
            "field 'models.0.compression.n_h_att': .*attention pruning of an OPT language model is refused",
        ),
        (f"{{name: x, checkpoint: {ckpt}, prompt: 'Q: {{q}} A:'}}", r"'models.0.prompt': must hold"),
        (f"{{name: x, checkpoint: {ckpt}, prompt: 'Q: A:'}}", r"prompt': must hold \{question\} once"),
    ]:
        exp.write_text(
            "name: public\nreproduces: Public LMMs\nkind: public_lmms\ndescription: x\n"
            f"models:\n  - {entry}\n"
        )
        with pytest.raises(SpecError, match=message):
            checked(exp, "smoke")


def blip2_qwen2(processor, folder):
    """Qwen2 in its stock layout: no head_dim in the config (derived as hidden size / heads)."""
    tok = processor.tokenizer
    text = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **_special(tok),
    ).to_dict()
    text.pop("head_dim", None)
    return _blip2(processor, folder, text)


def test_qwen2_without_head_dim_prunes_heads_and_hidden_into_folders_that_load(smoke, tmp_path):
    """The derived head_dim is written into the config before surgery, so attention and hidden pruning work
    and the pruned folder loads with the stock class, giving the same logits."""
    _, data, base_processor = smoke
    folder = blip2_qwen2(base_processor, tmp_path / "qwen2")
    assert "head_dim" not in json.loads((folder / "config.json").read_text())["text_config"]
    model, processor = load_lmm(folder)
    assert model.config.text_config.head_dim == 8
    for level, amount in (("attention", 16), ("hidden", 8)):
        prune_step(model, level, amount, torch.rand(*_shape(model, level)))
    model.save_pretrained(tmp_path / "out")
    processor.save_pretrained(tmp_path / "out")
    again = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    assert again.config.text_config.hidden_size == 24 and again.config.text_config.num_key_value_heads == 1
    torch.testing.assert_close(
        _logits(again, processor, data["test"]), _logits(model, processor, data["test"])
    )


def _shape(model, level: str) -> tuple[int, ...]:
    text = model.config.text_config
    if level == "attention":
        return (text.num_hidden_layers, text.num_key_value_heads)
    return (text.hidden_size,)


def test_old_format_folder_without_image_token_index_is_refused_naming_the_field(smoke, tmp_path):
    _, _, base_processor = smoke
    folder = blip2_opt(base_processor, tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["image_token_index"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="old: config.json has no 'image_token_index'"):
        load_lmm(folder)


def test_a_tokenizer_without_pad_token_pads_with_its_end_token(smoke, tmp_path):
    """Llama 3 style tokenizers have no pad token: the end token pads, as BLIP-2's processors do, and says
    so; evaluation then runs instead of failing in collate."""
    _, data, base_processor = smoke
    folder = blip2_opt(base_processor, tmp_path / "nopad")
    processor = Blip2Processor.from_pretrained(folder)
    processor.tokenizer.pad_token = None
    processor.save_pretrained(folder)
    with pytest.warns(UserWarning, match="no pad token; padding with its end token '</s>'"):
        model, processor = load_lmm(folder)
    assert processor.tokenizer.pad_token_id == processor.tokenizer.eos_token_id
    acc = evaluate(model, processor, data["test"].select(range(20)), 10)
    assert acc["n"] == 20


def test_prune_command_reports_a_refused_checkpoint_in_one_line(smoke, tmp_path, capsys):
    from harness.cli import main

    _, _, base_processor = smoke
    folder = blip2_opt(base_processor, tmp_path / "opt")
    args = ["prune", "--profile", "smoke", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    code = main(
        [
            *args,
            "--checkpoint",
            str(folder),
            "--level",
            "attention",
            "--amount",
            "16",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after any progress bar of loading
    assert code == 2 and last.startswith("error: ") and "OPT" in last and "Traceback" not in err


def test_public_lmms_of_public_checkpoints_alone_trains_no_stand_in(smoke, tmp_path):
    from harness.commands.run import run_experiment

    _, _, base_processor = smoke
    ckpt = blip2_opt(base_processor, tmp_path / "blip2-opt")
    exp = tmp_path / "public.yaml"
    exp.write_text(
        "name: public\nreproduces: Public LMMs\nkind: public_lmms\ndescription: x\nmodels:\n"
        f"  - {{name: Tiny BLIP-2 OPT, checkpoint: {ckpt}}}\n"
    )
    out, _ = run_experiment(exp, "smoke", tmp_path / "results", tmp_path / "cache", False, progress=False)
    rows = json.loads((out / "result.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["Tiny BLIP-2 OPT (zero-shot)"]
    assert not (tmp_path / "cache" / "teachers").exists()


def test_fine_tuning_batches_carry_the_answers_and_no_teacher_logits(smoke):
    """Fine-tuning a public model (label_ce) reads the answer tokens alone: its batches are built without
    running a language model, hold the same answer tokens as distillation's, and no teacher logits."""
    prof, data, _ = smoke
    model, processor = new_model(prof, data)
    rows = data["train"].select(range(40))
    plain = teacher_batches(None, processor, rows, 16, student=model)
    full = teacher_batches(model, processor, rows, 16)
    assert [len(b["answer_tokens"]) for b in plain] == [len(b["answer_tokens"]) for b in full]
    assert all(torch.equal(a["answer_tokens"], b["answer_tokens"]) for a, b in zip(plain, full, strict=True))
    assert all(torch.equal(a["query_output"], b["query_output"]) for a, b in zip(plain, full, strict=True))
    assert not any(k.startswith("teacher") for b in plain for k in b)
    loss = distill(model, plain, 1, 1e-4, "label_ce", 0.0, 0)
    assert len(loss) == 1 and math.isfinite(loss[0])


def test_a_checkpoints_prompt_is_its_own(tmp_path):
    """--prompt auto (load_lmm's default): what `harness prune` recorded in pruning.json, the stand-in's for
    any other folder the harness wrote, BLIP-2's for every other checkpoint; a given prompt always wins."""
    from harness.data.collate import BLIP2_PROMPT
    from harness.models.public import checkpoint_prompt

    plain, stand_in, pruned = (tmp_path / n for n in ("plain", "stand_in", "pruned"))
    for folder in (plain, stand_in, pruned):
        folder.mkdir()
    (stand_in / "manifest.json").write_text("{}")
    (pruned / "pruning.json").write_text(json.dumps({"prompt": "Q: {question} A:"}))
    assert checkpoint_prompt(plain) == BLIP2_PROMPT
    assert checkpoint_prompt(stand_in) is None
    assert checkpoint_prompt(pruned) == "Q: {question} A:"
    (pruned / "pruning.json").write_text(json.dumps({"criterion": "l1"}))  # written before prompts were kept
    assert checkpoint_prompt(pruned) is None
    assert checkpoint_prompt(plain, "stand-in") is None
    assert checkpoint_prompt(stand_in, "blip2") == BLIP2_PROMPT
    assert checkpoint_prompt(plain, "Say {question}") == "Say {question}"
